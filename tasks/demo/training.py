"""Training the demo CNN (:mod:`ace.tasks.models.demo_cnn`) on freshly rendered demo-world images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ace.tasks.demo.world import CLASS_NAMES, render
from ace.tasks.models.demo_cnn import DEMO_PREP, WEIGHTS, DemoCNN


def train_demo_model(out: str | Path = WEIGHTS, n_per_class: int = 400, epochs: int = 6, seed: int = 0) -> float:
    """Train :class:`DemoCNN` on freshly rendered images (seeded); save the state dict to ``out``.
    Returns the accuracy on 100 held-out images per class."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)

    def data(n):
        xs, ys = [], []
        for k, c in enumerate(CLASS_NAMES):
            for _ in range(n):
                xs.append(render(c, rng)[0])
                ys.append(k)
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(DEMO_PREP["mean"]).view(1, 3, 1, 1)) / torch.tensor(DEMO_PREP["std"]).view(1, 3, 1, 1)
        return x, torch.tensor(ys)

    x, y = data(n_per_class)
    xt, yt = data(100)
    model = DemoCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return acc
