"""Activation layouts: where the channels are in a layer's output.

ACE clusters superpixels on each channel's mean over the layer's spatial positions, and the pooled
embedding mode pools feature maps under superpixel masks; both need to know which axis holds the
channels. Layouts (``--layout``; ``auto`` finds them from the model and the output's shape):

* ``nchw``: convolutional maps (N, C, H, W): ResNet, EfficientNet, ConvNeXt, MobileNet, RegNet, ...
* ``nhwc``: channels last (N, H, W, C): Swin's ``features.<i>`` stages;
* ``tokens``: a sequence (N, L, C), as in ViT's encoder layers; the leading tokens beyond a square
  grid (ViT's class token: L = 1 + 14 * 14) are not positions and are left out of the grid;
* ``nc``: already a vector per image (N, C).

:func:`to_grid` turns any of them into (N, C, h, w) for the spatial mean and the mask pooling; the
full activation the CAVs are trained on is stored as computed (the same layout as its gradient).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from ace.tasks.errors import ACEInputError
from ace.tasks.params import choices, default

LAYOUTS = choices("layout")
MAX_PREFIX_TOKENS = 8  # class and register/distillation tokens before the patch grid


def _channels_last_model(model) -> bool:
    # a Swin model's module is imported before it exists: no need to import torchvision (1.5-2 s,
    # it loads torch._dynamo) for the models that do not use it
    swin = sys.modules.get("torchvision.models.swin_transformer")
    return swin is not None and isinstance(model, swin.SwinTransformer)


def detect_layout(shape: tuple[int, ...], model=None, requested: str = default("layout"), layer: str = "") -> str:
    """The layout of a layer output of ``shape`` (batch first). ``requested`` (``--layout``) wins where
    it fits the shape; ``auto`` uses the model's type, then the shape: with 4 dimensions the two
    equal ones are the grid ((N, C, 14, 14) is NCHW, (N, 14, 14, C) channels last)."""
    ndim = len(shape)
    if ndim == 2:
        return "nc"
    if requested not in LAYOUTS:
        raise ACEInputError(f"--layout must be one of {', '.join(LAYOUTS)}, got {requested!r}")
    if requested != "auto":
        if (requested == "tokens") != (ndim == 3) or ndim > 4:
            raise ACEInputError(f"--layout {requested} does not fit layer {layer!r}, whose output is "
                                f"{tuple(shape)}: use --layout auto")
        if requested == "tokens":
            token_grid(shape[1], layer)
        return requested
    if ndim == 3:
        token_grid(shape[1], layer)
        return "tokens"
    if ndim == 4:
        if _channels_last_model(model):
            return "nhwc"
        _, a, b, c = shape
        if b == c or a != b:
            return "nchw"
        return "nhwc"
    raise ACEInputError(f"layer {layer!r} outputs {ndim} dimensions {tuple(shape)}: choose a layer with an "
                        "(N, C, H, W), (N, H, W, C), (N, tokens, C) or (N, C) output")


def token_grid(n_tokens: int, layer: str = "") -> tuple[int, int, int]:
    """(leading non-grid tokens, h, w) of a sequence of ``n_tokens``: the smallest number of leading
    tokens that leaves a square grid (ViT-B/16 at 224: 197 -> (1, 14, 14))."""
    for prefix in range(0, MAX_PREFIX_TOKENS + 1):
        side = math.isqrt(n_tokens - prefix) if n_tokens > prefix else 0
        if side and side * side == n_tokens - prefix:
            return prefix, side, side
    raise ACEInputError(f"layer {layer!r} has {n_tokens} tokens, which are no square grid of patches (after up to "
                        f"{MAX_PREFIX_TOKENS} class tokens): choose another layer")


def to_grid(act, layout: str):
    """(N, C, h, w) view of an activation (torch tensor or numpy array) in ``layout``; ``nc`` stays (N, C)."""
    if layout == "nc" or act.ndim == 2:
        return act
    if layout == "nchw":
        return act if act.ndim == 4 else act.reshape(act.shape[0], act.shape[1], -1, 1)
    if layout == "nhwc":
        return _permute(act, (0, 3, 1, 2))
    if layout == "tokens":
        prefix, h, w = token_grid(act.shape[1])
        return _permute(act[:, prefix:], (0, 2, 1)).reshape(act.shape[0], act.shape[2], h, w)
    raise ValueError(f"unknown layout {layout!r}")


def _permute(a, dims):
    return a.permute(*dims) if isinstance(a, torch.Tensor) else np.transpose(a, dims)


def channel_mean(act, layout: str = "nchw"):
    """Mean per channel over the grid: (N, C) from an activation in ``layout``."""
    g = to_grid(act, layout)
    if g.ndim == 2:
        return g
    return g.mean(dim=(2, 3)) if isinstance(g, torch.Tensor) else g.reshape(g.shape[0], g.shape[1], -1).mean(-1)


def grid_sum(grad, layout: str = "nchw"):
    """Sum per channel over the grid (N, C): a gradient's derivative along a spatially constant direction."""
    g = to_grid(grad, layout)
    if g.ndim == 2:
        return g
    return g.sum(dim=(2, 3)) if isinstance(g, torch.Tensor) else g.reshape(g.shape[0], g.shape[1], -1).sum(-1)
