"""Where each concept fires: the class's significant concepts painted on its scoring images.

With ``--evaluate`` the scoring images are segmented and their superpixels assigned to concepts
(see :mod:`ace.tasks.algorithm.evaluate`, ``where``: the rule of ``ace explain-images``). The report
paints every scoring image with them (the finest assigned superpixel wins a pixel, as in the concept
maps of ``ace explain-images``), counts per concept the scoring images it fires in and the share of
their pixels it covers, and writes the first :data:`MAX_SHOWN` images, tinted in the concepts'
colours, to ``classes/<class>/results/where/``. Without ``--evaluate`` the scoring images are not
segmented and the report has no such section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ace.tasks.algorithm.concept_maps import paint
from ace.tasks.algorithm.images import read_images
from ace.tasks.algorithm.stats import ConceptScore
from ace.tasks.algorithm.superpixels import read_masks
from ace.tasks.report.image_page import concept_colour, tint
from ace.tasks.report.png import save_png

MAX_SHOWN = 12


def concept_maps(segments_path: str, superpixel_concept: list[int], n_images: int):
    """The (H, W) uint8 concept map of each scoring image (``j + 1``: the j-th significant concept), one at a time."""
    from ace.storage.tables import ArrayTable

    image_index = np.asarray(ArrayTable(segments_path).read("image_index"))
    assigned = np.asarray(superpixel_concept, np.int64)
    for i in range(n_images):
        rows = np.nonzero(image_index == i)[0]
        masks, _ = read_masks(segments_path, rows)
        yield paint(masks, assigned[rows])


def write_where(results_dir: Path, where: dict, scores: list[ConceptScore], layer: str, scoring: tuple[str, str]
                ) -> dict:
    """Paint the scoring images (``scoring``: their images table and segments table), write the first
    :data:`MAX_SHOWN` to ``results_dir/where/<k>.png``; returns the report's ``where`` block:
    ``layer``, ``n_images``, ``images`` (the PNGs, relative to the class folder) and ``concepts``
    (``concept``, ``direction``, ``colour``, ``images``: how many scoring images it fires in,
    ``pixel_share``: the mean share of their pixels it covers)."""
    images_path, segments_path = scoring
    names = list(where["concepts"])
    direction = {s.concept: s.direction for s in scores if s.layer == layer}
    images = read_images(images_path)
    fires = np.zeros(len(names), np.int64)
    pixels = np.zeros(len(names), np.float64)
    shown = []
    (results_dir / "where").mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(concept_maps(segments_path, where["superpixel_concept"], len(images))):
        counts = np.bincount(label.ravel(), minlength=len(names) + 1)[1:]
        fires += counts > 0
        pixels += counts / label.size
        if i < MAX_SHOWN:
            save_png(results_dir / "where" / f"{i:03d}.png", tint(images[i], label, names), atomic=False)
            shown.append(f"{results_dir.name}/where/{i:03d}.png")
    return {"layer": layer, "n_images": len(images), "images": shown,
            "concepts": [{"concept": n, "direction": direction.get(n, "neither"),
                          "colour": "#%02x%02x%02x" % concept_colour(n), "images": int(fires[j]),
                          "pixel_share": float(pixels[j] / max(len(images), 1))} for j, n in enumerate(names)]}


def where_lines(where: dict) -> list[str]:
    """The ``where`` block as text lines for ``ace_results.txt``."""
    lines = [f"Where each concept fires in the {where['n_images']} scoring images (layer {where['layer']}): "
             "scoring images it fires in, mean share of their pixels"]
    lines += [f"  {c['concept']} ({c['direction']}): {c['images']}, {c['pixel_share']:.1%}"
              for c in sorted(where["concepts"], key=lambda c: -c["pixel_share"])]
    return lines
