"""Step 2, superpixels (continued): superpixel images (segment crop resized to the model input) and patches.

They are never stored: :class:`ace.tasks.algorithm.sources.Superpixels` re-makes them from the discovery images
and the kept masks when the embedding step or the report needs them.

Fixes over the original: the bounding box includes its last row and column, and the fill is the
value that normalises to zero for the model (its mean), with 117/255 kept as ``fill="parity"``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def fill_uint8(fill: tuple[float, float, float]) -> np.ndarray:
    return np.clip(np.round(np.asarray(fill, np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_patch(image: np.ndarray, mask: np.ndarray, fill: tuple[float, float, float]) -> np.ndarray:
    """The whole image with every pixel outside ``mask`` set to ``fill`` (uint8); a batch of images
    and masks works the same."""
    return np.where(mask[..., None], image, fill_uint8(fill)).astype(image.dtype, copy=False)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The (H, W) mask's bounding box as slice bounds ``r1, r2, c1, c2`` (last row and column
    included), or None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def make_superpixel(image: np.ndarray, mask: np.ndarray, size: int, fill: tuple[float, float, float]) -> np.ndarray:
    """The segment's bounding box (inclusive), outside-mask pixels filled, resized (bicubic) to size x size."""
    box = mask_box(mask)
    if box is None:
        raise ValueError("an empty mask has no superpixel")
    r1, r2, c1, c2 = box
    crop = make_patch(image[r1:r2, c1:c2], mask[r1:r2, c1:c2], fill)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def highlight(image: np.ndarray, mask: np.ndarray, colour=(255, 214, 0)) -> np.ndarray:
    """Where a superpixel sits: the (uint8) image with everything outside ``mask`` dimmed to 30% and the
    segment outlined in ``colour``, the outline about 1/80 of the image wide (at least 2 pixels)."""
    from scipy.ndimage import binary_dilation

    img = np.asarray(image)
    out = np.where(mask[..., None], img, (img.astype(np.uint16) * 3 // 10).astype(np.uint8))
    box = mask_box(mask)
    if box is None:
        return out
    # the outline lies within ``width`` pixels of the segment: dilate only its bounding box grown by that
    width = max(2, round(max(mask.shape) / 80))
    r1, r2 = max(0, box[0] - width), min(mask.shape[0], box[1] + width)
    c1, c2 = max(0, box[2] - width), min(mask.shape[1], box[3] + width)
    box = mask[r1:r2, c1:c2]
    ring = binary_dilation(box, iterations=width) & ~box
    out[r1:r2, c1:c2][ring] = colour
    return out
