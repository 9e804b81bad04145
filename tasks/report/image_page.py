"""What ``ace explain-images`` writes for each image, and the page of a set of images.

Per image and layer, in ``classes/<class>/images/<layer>/<image stem>/`` (see ``docs/results.md``):

* ``map.png``: the concept map at the image's own size, 8-bit labels (0: no concept; k: the k-th
  entry of ``concepts`` in ``map.json``);
* ``overlay.png``: the image with each concept's pixels tinted in its colour and outlined, and a
  legend;
* ``weights.png``: a bar chart of the concepts' weights (occlusion), raising ones in green;
* ``map.json``: ``image``, ``layer``, ``target_class``, the image's class ``probability`` and
  ``logit``, and ``concepts``: ``label``, ``concept``, ``direction``, ``area_share``, ``occlusion``,
  ``occlusion_logit``, ``kept``, ``gradient``, ``colour``.

``classes/<class>/images/index.html`` shows every explained image with its overlay and weights.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ace.storage.atomic import write_text
from ace.tasks.algorithm.concept_maps import ConceptWeight
from ace.tasks.report.png import save_png

# one colour per concept, by its number in the class (<class>_concept<k>: colour k-1, cycling)
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128)]


def concept_colour(concept: str) -> tuple[int, int, int]:
    """The colour of ``<class>_concept<k>`` (the same in every image of the class)."""
    try:
        k = int(concept.rsplit("concept", 1)[1])
    except (IndexError, ValueError):
        k = sum(map(ord, concept))
    return PALETTE[(k - 1) % len(PALETTE)]


MIN_WIDTH = 420  # pixels: an overlay narrower than this is enlarged


def tint(image: np.ndarray, label: np.ndarray, concepts: list[str] | dict[int, str]) -> np.ndarray:
    """The image with each concept's pixels (``label == k`` for ``concepts[k - 1]``, or the dict's key
    ``k``) tinted in its colour (45%) and outlined."""
    from scipy.ndimage import binary_erosion

    out = image.astype(np.float32)
    items = concepts.items() if isinstance(concepts, dict) else enumerate(concepts, 1)
    for k, concept in items:
        region = label == k
        colour = np.asarray(concept_colour(concept), np.float32)
        out[region] = 0.55 * out[region] + 0.45 * colour
        edge = region & ~binary_erosion(region, iterations=max(1, round(max(label.shape) / 200)))
        out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


def overlay(image: np.ndarray, label: np.ndarray, weights: list[ConceptWeight]) -> np.ndarray:
    """The image tinted by :func:`tint`, and a legend strip below; images narrower than ``MIN_WIDTH``
    are enlarged by a whole factor."""
    out = tint(image, label, {w.label: w.concept for w in weights})
    scale = -(-MIN_WIDTH // out.shape[1])  # small images are enlarged (nearest neighbour) to fit the legend
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    h, width = out.shape[:2]
    line = 18
    legend = Image.new("RGB", (width, line * max(1, len(weights)) + 6), "white")
    draw = ImageDraw.Draw(legend)
    if not weights:
        draw.text((4, 3), "no concept of the class found in this image", fill="black")
    for i, w in enumerate(weights):
        y = 3 + i * line
        draw.rectangle((4, y + 2, 16, y + 14), fill=concept_colour(w.concept))
        draw.text((22, y + 2), f"{w.concept} ({w.direction}) {w.area_share:.0%} of the image, occlusion "
                               f"{w.occlusion:+.3f}", fill="black")
    return np.concatenate([out, np.asarray(legend)])


def weight_chart(weights: list[ConceptWeight], width: int = 420) -> np.ndarray:
    """Horizontal bars of each concept's occlusion weight (green: it raises the class here, red: it lowers it)."""
    row, left = 20, 150
    img = Image.new("RGB", (width, row * max(1, len(weights)) + 10), "white")
    draw = ImageDraw.Draw(img)
    top = max([abs(w.occlusion) for w in weights] + [1e-6])
    mid = left + (width - left - 10) // 2
    half = (width - left - 10) // 2
    draw.line((mid, 0, mid, img.height), fill=(140, 140, 140))
    for i, w in enumerate(sorted(weights, key=lambda w: -w.occlusion)):
        y = 5 + i * row
        draw.text((4, y + 3), w.concept[-18:], fill="black")
        end = mid + round(half * w.occlusion / top)
        draw.rectangle((min(mid, end), y + 3, max(mid, end), y + row - 3),
                       fill=(26, 127, 55) if w.occlusion >= 0 else (207, 34, 46))
    return np.asarray(img)


def write_image_outputs(folder: Path, image_file: str, layer: str, target_class: str, image: np.ndarray,
                        label: np.ndarray, weights: list[ConceptWeight], scores: dict[str, float]) -> dict:
    """``map.png``, ``overlay.png``, ``weights.png`` and ``map.json`` of one image; returns the json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_png(folder / "map.png", label)
    save_png(folder / "overlay.png", overlay(image, label, weights))
    save_png(folder / "weights.png", weight_chart(weights))
    data = {"image": str(image_file), "layer": layer, "target_class": target_class, **scores,
            "concepts": [{**asdict(w), "colour": "#%02x%02x%02x" % concept_colour(w.concept)} for w in weights]}
    write_text(folder / "map.json", json.dumps(data, indent=1))
    return data


def images_page(target_class: str, entries: list[tuple[str, dict]]) -> str:
    """``images/index.html``: per explained image (its folder, relative, and its map.json), the
    overlay, the weights and a table of its concepts."""
    esc = html.escape
    parts = []
    for rel, data in entries:
        rows = "".join(
            f"<tr><td><span style=\"display:inline-block;width:12px;height:12px;background:{c['colour']}\"></span> "
            f"{esc(c['concept'])}</td><td>{esc(c['direction'])}</td><td class=num>{c['area_share']:.0%}</td>"
            f"<td class=num>{c['occlusion']:+.3f}</td><td class=num>{c['kept']:.3f}</td>"
            f"<td class=num>{c['gradient']:+.4f}</td></tr>" for c in data["concepts"])
        parts.append(
            f"<section><h2>{esc(Path(data['image']).name)} <small>({esc(data['layer'])}; class probability "
            f"{data['probability']:.3f})</small></h2><div class=row><img src=\"{esc(rel)}/overlay.png\" alt=\"concept map "
            f"of {esc(Path(data['image']).name)}\"><img src=\"{esc(rel)}/weights.png\" alt=\"concept weights\"></div>"
            "<table><tr><th>concept</th><th>direction (class)</th><th>area</th><th>occlusion</th><th>only it kept</th>"
            f"<th>gradient</th></tr>{rows}</table></section>")
    style = ("body{font:14px system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:0 16px 40px}"
             ".row{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}.row img{max-width:520px}"
             "td,th{padding:2px 10px 2px 0;text-align:left}.num{text-align:right}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ACE: {esc(target_class)}, images</title>"
            f"<style>{style}</style></head><body><h1>Concepts of '{esc(target_class)}' in {len(entries)} images</h1>"
            "<p>Each image is cut into superpixels as the class's discovery images were; a superpixel belongs to a "
            "concept when it would have joined the concept's cluster. Occlusion: the class probability minus that with "
            "the concept's pixels filled with the neutral colour (above 0: the concept raises the class in this image). "
            "Gradient: the class-logit gradient along the concept's CAV, times its area.</p>"
            f"<p><a href=\"../index.html\">the class report</a></p>{''.join(parts)}</body></html>\n")


def explain_image_file(spec, layer: str, image_file: str, table_path: str, method: str, embedding: str,
                       fill: tuple[float, float, float], class_idx: int, batch_size: int, target_class: str,
                       out: list[str], compiled_dir: str | None = None) -> str:
    """Explain one image file with a layer's concepts (:func:`ace.tasks.algorithm.concept_maps.explain_image`)
    and write its outputs (this module's docstring). ``out``: the content-keyed stamp and the image's
    ``map.json``. Returns the ``map.json`` path."""
    from ace.tasks.algorithm.concept_maps import explain_image, read_concept_table, to_original_size
    from ace.tasks.algorithm.images import fit_image, open_image, to_rgb

    stamp, map_json = Path(out[0]), Path(out[1])
    table = read_concept_table(table_path)
    with open_image(image_file) as im:  # decoded once: the original for the outputs, resized for the model
        rgb = to_rgb(im, image_file)
    original = np.asarray(rgb, np.uint8)
    image = np.asarray(fit_image(rgb, spec.input_size, spec.resize), np.uint8)
    label, weights, scores = explain_image(spec, layer, image, method, embedding, fill, class_idx,
                                           [str(n) for n in table["names"]], [str(d) for d in table["directions"]],
                                           table["centres"], table["radii"], table["concept_of"], table["cavs"],
                                           batch_size, compiled_dir)
    full = to_original_size(label, (original.shape[1], original.shape[0]), spec.resize)
    weights = [w.__class__(**{**asdict(w), "area_share": float((full == w.label).mean())}) for w in weights]
    write_image_outputs(map_json.parent, image_file, layer, target_class, original, full, weights, scores)
    write_text(stamp, json.dumps({"map": str(map_json)}))
    return str(map_json)


def read_image_stamp(out: list[str]) -> str:
    return out[1]


IMAGES_LINK = '<p class="note"><a href="images/index.html">concept maps of images explained with these concepts</a></p>'


def write_images_index(class_dir: str, target_class: str) -> str:
    """``images/index.html`` of a class folder, from every ``map.json`` under ``images/``; the class
    page gets a link to it. Returns the page's path."""
    root = Path(class_dir) / "images"
    entries = [(p.parent.relative_to(root).as_posix(), json.loads(p.read_text())) for p in sorted(root.glob("*/*/map.json"))]
    page = root / "index.html"
    write_text(page, images_page(target_class, entries))
    link_images_page(Path(class_dir) / "index.html")
    return str(page)


def link_images_page(class_page: Path) -> None:
    """Add the link to ``images/index.html`` to a class page that lacks it."""
    if class_page.is_file() and (class_page.parent / "images" / "index.html").is_file():
        text = class_page.read_text()
        if IMAGES_LINK not in text and "</nav>" in text:
            write_text(class_page, text.replace("</nav>", "</nav>" + IMAGES_LINK, 1))
