"""Ground truth: how well the concepts match known parts of the class, where part masks exist.

A source folder may hold, beside its images, part masks in ``masks/<folder>/<image stem>.png``
(pixel value = part id, 0 = background) and ``masks/parts.json``::

    {"parts": {"disc": 1, "square": 2, ...}, "classes": {"disc_square": ["disc", "square"], ...}}

(``ace demo``'s world has them). Then the report of a class whose discovery images all have masks
carries a ``ground_truth`` block:

* per causal part of the class (``classes`` in parts.json): the best significant concept that
  raises the class, its ``purity`` (share of its examples, the superpixels its CAVs learn from,
  that lie mostly, > 50% of their pixels, on the part) and ``recall`` (share of all discovery
  superpixels lying mostly on the part that its cluster holds); the best is the purest, then the
  one with the higher recall;
* ``background_significant``: the number of significant concepts (either direction) whose examples
  lie mostly on the background (more than half of them have > 50% background pixels), named in
  ``background_concepts``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ace.tasks.algorithm.images import fit_image

MOSTLY = 0.5


def parts_file(image_files: list[str]) -> Path | None:
    """``masks/parts.json`` of the source folder of ``image_files``, if every image has a mask."""
    if not image_files:
        return None
    first = Path(image_files[0])
    spec = first.parent.parent / "masks" / "parts.json"
    if not spec.is_file() or not all(mask_file(f).is_file() for f in image_files):
        return None
    return spec


def mask_file(image_file: str) -> Path:
    p = Path(image_file)
    return p.parent.parent / "masks" / p.parent.name / f"{p.stem}.png"


def read_part_maps(image_files: list[str], size: int, resize: str) -> np.ndarray:
    """(N, size, size) uint8 part ids, resized as the images were (nearest neighbour)."""
    maps = []
    for f in image_files:
        with Image.open(mask_file(f)) as im:
            maps.append(np.asarray(fit_image(im.convert("L"), size, resize, Image.NEAREST), np.uint8))
    return np.stack(maps)


def part_shares(masks: np.ndarray, image_index: np.ndarray, part_maps: np.ndarray, n_ids: int) -> np.ndarray:
    """(K, n_ids) share of each superpixel's pixels on each part id (column 0: background)."""
    out = np.zeros((len(masks), n_ids), np.float64)
    for k, (m, i) in enumerate(zip(masks, image_index)):
        ids = part_maps[i][m]
        if len(ids):
            out[k] = np.bincount(ids, minlength=n_ids)[:n_ids] / len(ids)
    return out


def score_ground_truth(shares: np.ndarray, examples: dict[str, list[int]], members: dict[str, list[int]],
                       raising: list[str], significant: list[str], parts: dict[str, int], causal: list[str]) -> dict:
    """The ``ground_truth`` block (see the module docstring). ``examples`` / ``members``: concept -> its
    examples' / its whole cluster's rows of ``shares``; ``raising`` / ``significant``: concept names."""
    mostly = shares > MOSTLY
    block: dict = {"parts": {}, "background_significant": 0, "background_concepts": []}
    for part in causal:
        col = parts[part]
        on_part = int(mostly[:, col].sum())
        best = None
        for name in raising:
            rows, cluster = examples[name], members[name]
            cand = {"concept": name, "purity": float(mostly[rows, col].mean()) if rows else 0.0,
                    "recall": float(mostly[cluster, col].sum()) / on_part if on_part else 0.0, "size": len(cluster)}
            if best is None or (cand["purity"], cand["recall"]) > (best["purity"], best["recall"]):
                best = cand
        block["parts"][part] = {"superpixels_on_part": on_part, **(best or {"concept": None, "purity": 0.0,
                                                                            "recall": 0.0, "size": 0})}
    for name in significant:
        rows = examples[name]
        if rows and mostly[rows, 0].mean() > MOSTLY:
            block["background_concepts"].append(name)
    block["background_significant"] = len(block["background_concepts"])
    return block


def ground_truth(parts_json: Path, target_class: str, segments_path: str, image_files: list[str], size: int,
                 resize: str, examples: dict[str, list[int]], members: dict[str, list[int]], raising: list[str],
                 significant: list[str]) -> dict | None:
    """The ``ground_truth`` block of a class, or None when parts.json does not list the class."""
    from ace.tasks.algorithm.superpixels import read_masks

    spec = json.loads(parts_json.read_text())
    parts, causal = spec["parts"], spec.get("classes", {}).get(target_class)
    if causal is None:
        return None
    masks, image_index = read_masks(segments_path)
    shares = part_shares(masks, image_index, read_part_maps(image_files, size, resize), max(parts.values()) + 1)
    return score_ground_truth(shares, examples, members, raising, significant, parts, list(causal))


def ground_truth_lines(block: dict) -> list[str]:
    """The block as text lines for the terminal and ace_results.txt."""
    lines = ["Ground truth (part masks of the source): best concept raising the class per part"]
    for part, r in block["parts"].items():
        lines.append(f"  {part}: {r['concept'] or '-'} purity {r['purity']:.2f} recall {r['recall']:.2f} "
                     f"({r['superpixels_on_part']} superpixels lie mostly on it)")
    lines.append(f"  significant concepts mostly on the background: {block['background_significant']}"
                 + (f" ({', '.join(block['background_concepts'])})" if block["background_concepts"] else ""))
    return lines
