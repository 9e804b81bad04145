"""The small CNN of ``ace demo`` (64x64 images of the demo world, :mod:`ace.tasks.demo.world`), its
preprocessing and its weights, shipped in ``assets/demo_cnn.pt`` (made by ``scripts/train_demo_model.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ace.tasks.errors import ModelWeightsMissing
from ace.tasks.models.weights import load_weights_file

WEIGHTS = Path(__file__).with_name("assets") / "demo_cnn.pt"
N_CLASSES = 5  # the demo world's four classes and its background
DEMO_PREP = {"input_size": 64, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


class DemoCNN(nn.Module):
    """A four-block CNN for 64x64 images; layers ``block1`` .. ``block4``, then ``head``."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()

        def block(cin, cout, pool=True):
            layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
            return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)

        self.block1 = block(3, 16)
        self.block2 = block(16, 32)
        self.block3 = block(32, 64)
        self.block4 = block(64, 64, pool=False)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes))

    def forward(self, x):
        return self.head(self.block4(self.block3(self.block2(self.block1(x)))))


def load_demo_model(path: str | None = None) -> tuple[nn.Module, dict]:
    model = DemoCNN()
    if path:
        if not Path(path).is_file():
            raise ModelWeightsMissing(f"--model_path {path} does not exist: leave it out to use the demo CNN's "
                                      f"shipped weights ({WEIGHTS}), or pass a state dict of the demo CNN")
        return load_weights_file(path, model), dict(DEMO_PREP)
    if not WEIGHTS.is_file():
        raise ModelWeightsMissing(f"the demo CNN's weights {WEIGHTS} are missing from the installed package: "
                                  "reinstall ace-flow, or run scripts/train_demo_model.py to remake them")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model, dict(DEMO_PREP)
