"""Step 2, superpixels: of every discovery image at three resolutions, de-duplicated.

Defaults are the original ACE's. Fixes: every label is visited (the original's loop missed the
last one), and watershed runs on a greyscale gradient (the original passed RGB). SLIC's Gaussian
pre-smoothing (sigma 1 pixel at the original's 224-299 pixel inputs) is scaled down for smaller
images (sigma * side / 224): at 64 pixels a 1-pixel blur merges thin part edges into the background.
"""

from __future__ import annotations

import numpy as np
from skimage import color, filters, segmentation

from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.errors import ACEInputError
from ace.tasks.params import default
from ace.tasks.algorithm.images import read_images
from ace.tasks.algorithm.slic import slic_levels
from ace.tasks.threads import ordered_map

# the original's three resolutions of each --superpixel_method
RESOLUTIONS: dict[str, list[dict]] = {
    "slic": [dict(n_segments=n, compactness=20.0, sigma=1.0) for n in (15, 50, 80)],
    "watershed": [dict(markers=n, compactness=0.0) for n in (15, 50, 80)],
    "quickshift": [dict(max_dist=d, ratio=1.0, kernel_size=10) for d in (20, 15, 10)],
    "felzenszwalb": [dict(scale=s, sigma=0.8, min_size=20) for s in (1200, 500, 250)],
}


SMOOTHING_SIDE = 224  # image side at and above which SLIC smooths with the original's sigma


def _as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image


def segment(image: np.ndarray, method: str, params: dict, seed: int = 0) -> np.ndarray:
    """Label map (H, W) of one segmentation of a uint8 or [0, 1] RGB image."""
    if method == "slic":
        return segment_levels(image, method, [params])[0]
    img = _as_float(image)
    if method == "watershed":
        gradient = filters.sobel(color.rgb2gray(img))
        return segmentation.watershed(gradient, **params)
    if method == "quickshift":
        return segmentation.quickshift(img.astype(np.float64), rng=seed, channel_axis=-1, **params)
    if method == "felzenszwalb":
        return segmentation.felzenszwalb(img, channel_axis=-1, **params)
    raise ACEInputError(f"unknown superpixel method {method!r}: choose one of {', '.join(RESOLUTIONS)}")


def segment_levels(image: np.ndarray, method: str, param_sets: list[dict]) -> list[np.ndarray]:
    """:func:`segment` at each of ``param_sets``; SLIC's resolutions share their preparation
    (:mod:`ace.tasks.algorithm.slic`: the same labels, ~10% less work)."""
    if method != "slic":
        return [segment(image, method, p) for p in param_sets]
    img = _as_float(image)
    smoothing = min(1.0, max(img.shape[:2]) / SMOOTHING_SIDE)  # the original's sigma, scaled down below 224 px
    return slic_levels(img, [{**p, "sigma": p.get("sigma", 0.0) * smoothing} for p in param_sets])


def dense_labels(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A label map relabelled 0..n-1 in the order of its labels, flattened, and each label's area.
    SLIC's maps already are (then no sort is needed); others are relabelled as ``np.unique`` would."""
    flat = segments.reshape(-1).astype(np.int64, copy=False)
    low = int(flat.min())
    if low >= 0:
        shifted = flat - low if low else flat
        area = np.bincount(shifted)
        if area.all():
            return shifted, area
    _, flat = np.unique(flat, return_inverse=True)
    return flat.reshape(-1), np.bincount(flat.reshape(-1))


def superpixel_masks(image: np.ndarray, method: str = default("superpixel_method"), min_area: float = 0.001,
                     max_jaccard: float = 0.5, param_sets: list[dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kept segments of one image, coarse resolution first.

    A segment is kept if it covers more than ``min_area`` of the image and its Jaccard overlap with
    every segment kept at coarser resolutions is <= ``max_jaccard``. Overlaps are counted from the
    joint histogram of two label maps (exact integer counts), never from per-segment masks.

    Returns:
        masks: (K, H, W) bool; levels: (K,) int, the resolution each mask came from.
    """
    if method not in RESOLUTIONS:
        raise ACEInputError(f"unknown superpixel method {method!r}: choose one of {', '.join(RESOLUTIONS)}")
    h, w = image.shape[:2]
    coarser: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []  # (labels, n labels, kept ids, areas)
    masks: list[np.ndarray] = []
    levels: list[int] = []
    for level, segments in enumerate(segment_levels(image, method, param_sets or RESOLUTIONS[method])):
        labels, area = dense_labels(segments)
        n = len(area)
        ok = area > min_area * h * w
        for prev, n_prev, ids, prev_area in coarser:
            inter = np.bincount(labels * n_prev + prev, minlength=n * n_prev).reshape(n, n_prev)[:, ids]
            jaccard = inter / (area[:, None] + prev_area[None, :] - inter)
            ok &= ~np.any(jaccard > max_jaccard, axis=1)
        ids = np.nonzero(ok)[0]
        if len(ids):
            coarser.append((labels, n, ids, area[ids]))
            masks.append(labels[None, :] == ids[:, None])
            levels.extend([level] * len(ids))
    if not masks:
        return np.zeros((0, h, w), bool), np.zeros(0, np.int64)
    return np.concatenate(masks).reshape(-1, h, w), np.asarray(levels, np.int64)


def write_segments(images_path: str, method: str, out: str, n_jobs: int = 1) -> str:
    """Segment every image of an images table; write packed masks with their image index."""
    images = read_images(images_path)
    # streamed: each image's masks are packed and written as soon as they come (never all at once)
    results = ordered_map(lambda img: superpixel_masks(img, method), images, max(1, n_jobs))
    h, w = images.shape[1:3]
    with TableWriter(out, {"method": method, "height": h, "width": w}) as wr:
        for i, (masks, levels) in enumerate(results):
            if len(masks):
                wr.append(mask=np.packbits(masks.reshape(len(masks), -1), axis=1),
                          image_index=np.full(len(masks), i, np.int64), level=levels)
    return out


def unpack_masks(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(K, H*W/8) packed masks (as stored) to (K, H, W) bool."""
    h, w = shape
    return np.unpackbits(packed, axis=1, count=h * w).reshape(-1, h, w).astype(bool)


def read_masks(path: str, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Unpacked (K, H, W) bool masks and their image indices."""
    t = ArrayTable(path)
    masks = unpack_masks(t.read("mask", rows), (t.meta["height"], t.meta["width"]))
    return masks, np.asarray(t.read("image_index", rows))


class PackedMasks:
    """The masks of chosen rows of a segments table, read in one pass and kept bit-packed (6 KB a
    224x224 mask); each is unpacked when asked for."""

    def __init__(self, path: str, rows) -> None:
        t = ArrayTable(path)
        self.height, self.width = t.meta["height"], t.meta["width"]
        rows = np.unique(np.asarray(list(rows), np.int64))
        self._pos = {int(r): k for k, r in enumerate(rows)}
        self._packed = t.read("mask", rows)
        self._image_index = np.asarray(t.read("image_index", rows))

    def mask(self, row: int) -> np.ndarray:
        return unpack_masks(self._packed[self._pos[int(row)]][None], (self.height, self.width))[0]

    def image_index(self, rows) -> list[int]:
        return [int(self._image_index[self._pos[int(r)]]) for r in rows]
