"""SLIC at several resolutions of one image, with the work they share done once.

scikit-image's ``slic`` rescales the image to [0, 1], converts it to Lab and smooths it before its
k-means loop. At ACE's three resolutions (15, 50 and 80 segments, one compactness and one sigma) that
preparation is the same three times: ~16% of each call at 224 pixels. :func:`slic_levels` prepares
the image once per (sigma, compactness) and runs scikit-image's own loop and connectivity pass for
each number of segments, so the labels are scikit-image's, bit for bit.

The loop is scikit-image's private code. The first call checks the shortcut against
``skimage.segmentation.slic`` on a small image; where they differ, or the private code has moved (another
scikit-image version), every resolution is a plain ``slic`` call.
"""

from __future__ import annotations

import math

import numpy as np
from skimage import segmentation

SHARED_KEYS = {"n_segments", "compactness", "sigma", "max_num_iter"}  # what the shortcut handles
_usable: bool | None = None  # whether the shortcut equals skimage's slic here (checked once)


def slic_levels(image: np.ndarray, param_sets: list[dict]) -> list[np.ndarray]:
    """Label maps (H, W; labels from 0) of an (H, W, 3) RGB image, one per ``param_sets`` entry, each
    equal to ``skimage.segmentation.slic(image, start_label=0, channel_axis=-1, **params)``."""
    if not param_sets:
        return []
    if not all(set(p) <= SHARED_KEYS for p in param_sets) or not _shortcut_usable():
        return [_plain(image, p) for p in param_sets]
    return _shared(image, param_sets)


def _plain(image: np.ndarray, params: dict) -> np.ndarray:
    return segmentation.slic(image, start_label=0, channel_axis=-1, **params)


def _shared(image: np.ndarray, param_sets: list[dict]) -> list[np.ndarray]:
    from skimage._shared.utils import _supported_float_type
    from skimage.color import rgb2lab
    from skimage.filters import gaussian
    from skimage.segmentation._slic import _enforce_label_connectivity_cython, _slic_cython
    from skimage.segmentation.slic_superpixels import _get_grid_centroids
    from skimage.util import img_as_float

    # slic's preparation, in its order: float copy, rescaled to [0, 1], Lab, smoothed, times 1 / compactness
    base = img_as_float(image)
    dtype = _supported_float_type(base.dtype)
    base = base.astype(dtype, copy=True)
    low, high = base.min(), base.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        return [_plain(image, p) for p in param_sets]  # slic's own error message
    base -= low
    if high != low:
        base /= high - low
    lab = rgb2lab(base[np.newaxis])  # (1, H, W, 3): slic treats a 2-D image as one plane of a volume
    spacing = np.ones(3, dtype=dtype)
    prepared: dict[tuple, np.ndarray] = {}
    out = []
    for p in param_sets:
        sigma, compactness = p.get("sigma", 0), p.get("compactness", 10.0)
        key = (float(sigma), float(compactness))
        if key not in prepared:
            s = np.array([sigma, sigma, sigma], dtype=dtype)
            s /= spacing
            smooth = gaussian(lab, sigma=list(s) + [0], mode="reflect") if (s > 0).any() else lab
            prepared[key] = np.ascontiguousarray(smooth * (1.0 / compactness), dtype=dtype)
        ready = prepared[key]
        centroids, steps = _get_grid_centroids(lab, p.get("n_segments", 100))
        seeds = np.ascontiguousarray(np.concatenate([centroids, np.zeros((len(centroids), lab.shape[3]))], axis=-1),
                                     dtype=dtype)
        labels = _slic_cython(ready, None, seeds, max(steps), p.get("max_num_iter", 10), spacing, False,
                              ignore_color=False, start_label=0)
        size = math.prod(ready.shape[:3]) / len(centroids)
        labels = _enforce_label_connectivity_cython(labels, int(0.5 * size), int(3 * size), start_label=0)
        out.append(labels[0])
    return out


def _shortcut_usable() -> bool:
    """Whether :func:`_shared` gives ``slic``'s labels with the installed scikit-image (checked once,
    on a 40 x 48 image at two resolutions, two sigmas and two compactnesses)."""
    global _usable
    if _usable is None:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[:40, :48]
        image = np.clip(np.stack([x / 48, y / 40, (x + y) % 17 / 17], -1) + rng.normal(0, 0.05, (40, 48, 3)), 0, 1)
        image = image.astype(np.float32)
        sets = [dict(n_segments=6, compactness=20.0, sigma=1.0), dict(n_segments=20, compactness=20.0, sigma=1.0),
                dict(n_segments=20, compactness=5.0, sigma=0.0)]
        try:
            _usable = all(np.array_equal(a, _plain(image, p)) for a, p in zip(_shared(image, sets), sets))
        except (ImportError, AttributeError, TypeError, ValueError):
            _usable = False
    return _usable
