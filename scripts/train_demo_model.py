"""Re-train the demo CNN shipped in tasks/models/assets/demo_cnn.pt (seeded; about a minute on 2 cores).

    python scripts/train_demo_model.py [OUT]
"""

import sys

import torch

from ace.tasks.demo.training import train_demo_model
from ace.tasks.models.demo_cnn import WEIGHTS

if __name__ == "__main__":
    torch.set_num_threads(2)
    out = sys.argv[1] if len(sys.argv) > 1 else WEIGHTS
    acc = train_demo_model(out)
    print(f"saved {out}; held-out accuracy {acc:.3f}")
