"""The demo world: seeded images whose classes are defined by known parts on background textures,
with the ground-truth part masks (the small CNN trained on it is :mod:`ace.tasks.models.demo_cnn`).

Classes (each image has both of its class's parts, placed at random, on a random texture):

    disc_square        red disc + blue square
    disc_stripes       red disc + green stripes
    triangle_square    yellow triangle + blue square
    triangle_stripes   yellow triangle + green stripes
    background         texture with one or two grey/purple distractor blobs (the random images)

``make_world`` writes ACE's source layout (``<class>/``, ``random_discovery/``,
``random500_<i>/``) plus ``masks/<folder>/<image>.png`` whose pixel values are part ids
(0 background, 1 disc, 2 square, 3 triangle, 4 stripes, 5 distractor) and ``masks/parts.json`` naming
the ids and each class's parts (the report's ground truth, :mod:`ace.tasks.algorithm.groundtruth`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
PARTS = {"disc": 1, "square": 2, "triangle": 3, "stripes": 4, "distractor": 5}
CLASSES = {
    "disc_square": ("disc", "square"),
    "disc_stripes": ("disc", "stripes"),
    "triangle_square": ("triangle", "square"),
    "triangle_stripes": ("triangle", "stripes"),
    "background": (),
}
CLASS_NAMES = list(CLASSES)
DEMO_CLASS = "disc_square"
DEMO_LAYER = "block3"


def _texture(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    base = rng.uniform(0.3, 0.7, 3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # smooth noise
        noise = rng.normal(0, 1, (SIZE // 8, SIZE // 8)).astype(np.float32)
        pattern = np.asarray(Image.fromarray(noise).resize((SIZE, SIZE), Image.BICUBIC)) * 0.08
    elif kind == 1:  # diagonal lines
        period = rng.uniform(5, 12)
        pattern = 0.08 * np.sin((xx + yy * rng.uniform(-1, 1)) * 2 * np.pi / period)
    else:  # checker
        cell = int(rng.integers(4, 10))
        pattern = 0.07 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    img = base[None, None, :] + pattern[..., None] + rng.normal(0, 0.02, (SIZE, SIZE, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def _part_mask(part: str, rng: np.random.Generator, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    if part == "disc":
        r = rng.uniform(7, 10)
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if part == "square":
        h = rng.uniform(6, 9)
        return (np.abs(xx - cx) <= h) & (np.abs(yy - cy) <= h)
    if part == "triangle":
        h = rng.uniform(8, 11)
        return (yy >= cy - h) & (yy <= cy + h) & (np.abs(xx - cx) <= (yy - (cy - h)) / 2)
    if part == "stripes":
        h = rng.uniform(7, 10)
        box = (np.abs(xx - cx) <= h) & (np.abs(yy - cy) <= h)
        return box & (((yy - cy + h) // 3) % 2 == 0)
    # distractor: an ellipse
    a, b = rng.uniform(5, 11), rng.uniform(3, 7)
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1


_COLORS = {"disc": (0.85, 0.1, 0.1), "square": (0.1, 0.2, 0.85), "triangle": (0.95, 0.85, 0.1),
           "stripes": (0.1, 0.7, 0.2)}


def render(class_name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (SIZE, SIZE, 3) uint8 image of ``class_name`` and its (SIZE, SIZE) uint8 part-id mask."""
    img = _texture(rng)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    parts = list(CLASSES[class_name]) or ["distractor"] * int(rng.integers(1, 3))
    # two well-separated centres
    centres = []
    while len(centres) < len(parts):
        c = rng.uniform(14, SIZE - 14, 2)
        if all(np.hypot(*(c - d)) > 24 for d in centres):
            centres.append(c)
    for part, (cx, cy) in zip(parts, centres):
        m = _part_mask(part, rng, cx, cy)
        if part == "distractor":
            color = rng.choice([[0.55, 0.55, 0.55], [0.5, 0.3, 0.6], [0.6, 0.45, 0.3]])
        else:
            color = np.clip(np.asarray(_COLORS[part]) + rng.normal(0, 0.05, 3), 0, 1)
        img[m] = color
        mask[m] = PARTS[part]
    img = np.clip(img + rng.normal(0, 0.015, img.shape), 0, 1)
    return (img * 255).round().astype(np.uint8), mask


def make_world(root: str | Path, n_per_class: int = 80, n_random: int = 40, num_random_sets: int = 20,
               seed: int = 0) -> Path:
    """Write the demo world under ``root`` in ACE's source layout (PNG files); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    folders = [(c, c, n_per_class) for c in CLASSES if c != "background"]
    folders += [("random_discovery", "background", n_random)]
    folders += [(f"random500_{i}", "background", n_random) for i in range(num_random_sets)]
    for folder, cls, n in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "masks" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = render(cls, rng)
            Image.fromarray(img).save(root / folder / f"{folder}_{i:03d}.png")
            Image.fromarray(mask).save(root / "masks" / folder / f"{folder}_{i:03d}.png")
    (root / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (root / "masks" / "parts.json").write_text(json.dumps({"parts": PARTS, "classes": {
        c: list(p) for c, p in CLASSES.items() if p}}, indent=1))
    return root
