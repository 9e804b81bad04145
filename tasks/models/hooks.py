"""Forward hooks that take a model's layer outputs by name: what the PyTorch passes
(:mod:`ace.tasks.algorithm.forward`) and the OpenVINO conversion (:mod:`ace.tasks.models.backends`)
both use, so both backends see the same layers."""

from __future__ import annotations

import torch
from torch import nn


class _Enough(Exception):
    """Raised by a hook once every wanted activation is captured: skips the rest of the network."""


def first_tensor(out):
    """A layer's output as one tensor: itself, or the first of a tuple or list."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"layer output is a {type(out).__name__}, not a tensor")


def capture_layers(model: nn.Module, layers: list[str], x: torch.Tensor, keep) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` until every layer of ``layers`` has given its output (its first tensor,
    where it returns a tuple), and return ``keep(output)`` for each; a module called more than once
    keeps its last call before then. The rest of the network is skipped. The caller chooses the grad
    mode; the OpenVINO conversion traces this pass (:class:`ace.tasks.models.backends._Cut`)."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name):
        def hook(_m, _inp, out):
            captured[name] = keep(first_tensor(out))
            if len(captured) == len(layers):
                raise _Enough

        return hook

    for name in layers:
        handles.append(modules[name].register_forward_hook(hook_for(name)))
    try:
        model(x)
    except _Enough:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [l for l in layers if l not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} were never called in the forward pass")
    return captured
