"""Step 3, embed, in its fast mode, ``--embedding pooled``: one forward pass per image, not per superpixel.

Each superpixel is embedded as the mask-weighted mean of the layer's feature map of its whole image
(the mask resampled to the feature grid by area averaging); random images as the plain spatial mean
of theirs. CAVs then live in this pooled (channel) space, and TCAV uses the class-logit gradient
summed over the grid: the directional derivative of the logit along a spatially constant direction.
Activations are (N, C) float32 rows: nothing is stored per pixel.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.algorithm.forward import activation_passes
from ace.tasks.algorithm.images import read_images
from ace.tasks.models.layouts import to_grid
from ace.tasks.models.loader import ModelSpec, check_model_layers, using_model
from ace.tasks.algorithm.superpixels import unpack_masks


def mask_weights(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) bool masks as (K, h, w) weights on a feature grid: the share of each cell's pixels
    the mask covers (area averaging), normalised to sum to 1 per mask."""
    m = torch.from_numpy(np.ascontiguousarray(masks)).float().unsqueeze(1)
    w = F.adaptive_avg_pool2d(m, grid).squeeze(1)
    return w / w.sum((1, 2), keepdim=True).clamp_min(1e-12)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def packed_mask_weights(packed: np.ndarray, shape: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor | None:
    """:func:`mask_weights` of bit-packed (K, H*W/8) masks, counted from the packed bytes (8x less
    data than unpacking), where each grid cell is a whole number of bytes wide (224 pixels to a 14, 7
    or 28 grid); else None. The same weights: area averaging of an evenly divided image is the cell's
    pixel count over the cell's area."""
    (height, width), (h, w) = shape, grid
    if height % h or width % w or (width // w) % 8:
        return None
    counts = _POPCOUNT[packed[:, : height * width // 8]].reshape(len(packed), h, height // h, w, width // w // 8)
    weights = torch.from_numpy(counts.sum(axis=(2, 4), dtype=np.float32))
    return weights / weights.sum((1, 2), keepdim=True).clamp_min(1e-12)


def pool_feature_map(fmap: torch.Tensor, weights: torch.Tensor | None = None) -> np.ndarray:
    """(N, C, h, w) feature maps (see :func:`ace.tasks.models.layouts.to_grid`) pooled to (N, C): by ``weights``
    (N, h, w), else the plain mean."""
    fmap = fmap.float()
    if fmap.ndim == 2:
        return fmap.cpu().numpy()
    if weights is None:
        return fmap.mean(dim=tuple(range(2, fmap.ndim))).cpu().numpy()
    return torch.einsum("nchw,nhw->nc", fmap, weights).cpu().numpy()


def write_pooled_superpixels(spec: ModelSpec, layers: list[str], images_path: str, segments_path: str,
                             outs: list[str], batch_size: int, compiled_dir: str | None = None) -> list[str]:
    """Embed every kept segment (rows of the segments table) by mask-weighted pooling of its image's
    feature map; one table per layer with ``act`` and ``mean`` (the same (C,) vector)."""
    images = read_images(images_path)
    seg = ArrayTable(segments_path)
    image_index = np.asarray(seg.read("image_index"))
    shape = (seg.meta["height"], seg.meta["width"])
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(using_model(spec))
        check_model_layers(model, layers)
        passes = activation_passes(model, spec, layers, compiled_dir)
        writers = [stack.enter_context(TableWriter(o, {"layer": l, "model": spec.key, "embedding": "pooled"}))
                   for l, o in zip(layers, outs)]
        starts = range(0, len(images), batch_size)
        for start, acts in zip(starts, passes.stream(images[s:s + batch_size] for s in starts)):
            stop = min(start + batch_size, len(images))
            rows = np.nonzero((image_index >= start) & (image_index < stop))[0]
            for chunk in range(0, len(rows), 256):  # a few hundred masks at a time
                packed, idx = seg.read("mask", rows[chunk:chunk + 256]), image_index[rows[chunk:chunk + 256]]
                masks = None
                for layer, w in zip(layers, writers):
                    fmap = to_grid(acts[layer].float(), spec.layout(layer, tuple(acts[layer].shape)))
                    grid = tuple(fmap.shape[2:])
                    weights = packed_mask_weights(packed, shape, grid)
                    if weights is None:
                        if masks is None:
                            masks = unpack_masks(packed, shape)
                        weights = mask_weights(masks, grid)
                    v = pool_feature_map(fmap[torch.from_numpy(idx - start)], weights).astype(np.float32)
                    w.append(act=v, mean=v)
    return outs
