"""Weights: load a state dict, a whole saved module or a TorchScript file; where the torch hub cache is.

Nothing is downloaded: a missing file is an error naming it (see :mod:`ace.tasks.models.zoo` for
the supported ``--model_to_run`` values).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ace.tasks.errors import ACEInputError, ModelWeightsMissing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _hub_dir() -> Path:
    return Path(torch.hub.get_dir())


def _strip_prefix(state: dict) -> dict:
    for key in ("state_dict", "model_state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state(model: nn.Module, state: dict, source: str, ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict (``module.`` prefixes and ``{"state_dict": ...}`` wrappers accepted) into
    ``model``; keys starting with ``ignore`` (auxiliary heads) may be absent or extra."""
    state = {k: v for k, v in _strip_prefix(state).items() if not (ignore and k.startswith(ignore))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ACEInputError(f"{source} does not fit --model_to_run: {str(e)[:500]}") from e
    if missing or unexpected:
        raise ACEInputError(f"{source} does not fit --model_to_run: missing keys {missing[:5]}, "
                            f"unexpected keys {unexpected[:5]}")
    return model


def load_weights_file(path: str | Path, model: nn.Module | None, ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load ``path`` as TorchScript, a whole pickled module, or a state dict into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ModelWeightsMissing(f"--model_path {path} does not exist: pass the path of a saved state dict, "
                                  "whole module or TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:  # a whole pickled module: only load files you trust
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ACEInputError(f"--model_path {path} is not a PyTorch file ({type(e).__name__}: {str(e)[:120]}): "
                                "pass a saved state dict, whole module or TorchScript file") from None
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, dict):
        raise ACEInputError(f"--model_path {path} holds a {type(obj).__name__}, not a model or a state dict")
    if model is None:
        raise ACEInputError(f"--model_path {path} is a state dict: also name the architecture with --model_to_run")
    return load_state(model, obj, f"--model_path {path}", ignore)
