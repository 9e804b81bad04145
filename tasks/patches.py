"""Step 3: superpixel images (segment crop resized to the model input) and patches.

Fixes over the original: the bounding box includes its last row and column, and the fill is the
value that normalises to zero for the model (its mean), with 117/255 kept as ``fill="parity"``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.caching import ace_task
from ace.tasks.images import read_images
from ace.tasks.superpixels import read_masks


def fill_uint8(fill: tuple[float, float, float]) -> np.ndarray:
    return np.clip(np.round(np.asarray(fill, np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_patch(image: np.ndarray, mask: np.ndarray, fill: tuple[float, float, float]) -> np.ndarray:
    """The whole image with every pixel outside ``mask`` set to ``fill`` (uint8)."""
    out = np.empty_like(image)
    out[...] = fill_uint8(fill)
    out[mask] = image[mask]
    return out


def make_superpixel(image: np.ndarray, mask: np.ndarray, size: int, fill: tuple[float, float, float]) -> np.ndarray:
    """The segment's bounding box (inclusive), outside-mask pixels filled, resized (bicubic) to size x size."""
    rows, cols = np.nonzero(mask)
    r1, r2, c1, c2 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = make_patch(image[r1:r2, c1:c2], mask[r1:r2, c1:c2], fill)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def write_patches(images_path: str, segments_path: str, size: int, fill: tuple[float, float, float], out: str,
                  batch: int = 32) -> str:
    """Write the superpixel image of every kept segment (rows aligned with the segments table)."""
    images = read_images(images_path)
    seg = ArrayTable(segments_path)
    with TableWriter(out, {"size": size, "fill": list(fill)}) as w:
        for start in range(0, seg.num_rows, batch):
            rows = np.arange(start, min(start + batch, seg.num_rows))
            masks, idx = read_masks(segments_path, rows)
            sp = np.stack([make_superpixel(images[i], m, size, fill) for m, i in zip(masks, idx)])
            w.append(superpixel=sp, image_index=idx.astype(np.int64), segment=rows.astype(np.int64))
    return out


@ace_task("patches")
def patches_task(images_path: str, segments_path: str, size: int, fill: tuple[float, float, float], out: str) -> str:
    return write_patches(images_path, segments_path, size, fill, out)
