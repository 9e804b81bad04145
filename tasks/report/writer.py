"""Step 7, report: the report of one class, in its own folder of the working directory.

The folder (``classes/<class>/``, see ``docs/working-dir.md`` and :class:`ace.storage.layout.ClassDir`)
is written all at once: built aside and swapped in, so a report never mixes two runs and concept
folders of an earlier run with other flags do not linger. It holds the summary (``ace_results.txt``
and ``.json``), each significant concept's examples (superpixels, patches, "where" images), the
galleries, the evaluation when there is one, and the HTML page (:mod:`ace.tasks.report.html`).
Beside it, shared by the classes of the working directory: ``results_summaries/classes.tsv``,
``index.html`` and the legacy ``results_summaries/ace_results.txt`` link.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ace.storage.atomic import atomic_dir, file_lock, mkdirs, write_text
from ace.storage.layout import ClassDir, WorkDir, class_folder, concept_folder, safe_name
from ace.tasks.algorithm.cluster import read_concepts
from ace.tasks.algorithm.embed import predicted_share
from ace.tasks.algorithm.images import read_images
from ace.tasks.algorithm.evaluate import evaluation_lines
from ace.tasks.algorithm.groundtruth import ground_truth_lines
from ace.tasks.report.html import ConceptView, class_page, index_page
from ace.tasks.report.image_page import link_images_page
from ace.tasks.report.info import ReportInputs, RunInfo
from ace.tasks.algorithm.patches import highlight, make_patch, make_superpixel
from ace.tasks.report.png import save_png, to_uint8
from ace.tasks.report.where import where_lines, write_where
from ace.tasks.algorithm.sources import Superpixels
from ace.tasks.algorithm.cav import RandomSetScores
from ace.tasks.algorithm.stats import ConceptScore, random_baseline
from ace.tasks.algorithm.superpixels import PackedMasks


def summary_text(info: RunInfo, scores: list[ConceptScore], baselines: dict[str, tuple[float, float, float]]) -> str:
    kept = [s for s in scores if s.significant]
    raises = sorted((s for s in kept if s.direction == "raises"), key=lambda s: (s.layer, -s.tcav_mean))
    lowers = sorted((s for s in kept if s.direction != "raises"), key=lambda s: (s.layer, s.tcav_mean))
    lines = [
        f"# ACE results for class '{info.target_class}' (index {info.class_index}), model {info.model}",
        f"# layers {', '.join(info.layers)}; {info.num_random_exp} random sets; {info.n_discovery} discovery and "
        f"{info.n_scoring} scoring images (model predicts the class on {info.scoring_accuracy:.0%} of them)",
        f"# TCAV score: share of scoring images whose class-logit gradient . CAV > 0; a concept is kept if its "
        f"{info.test} paired t-test against random_discovery gives p <= {info.alpha} (correction: {info.correction})",
        f"# {len(kept)} of {len(scores)} concepts kept: {len(raises)} raise the class (TCAV above random_discovery's), "
        f"{len(lowers)} lower it (below: evidence *against* the class)",
    ]
    for title, group in (("Concepts that raise the class, highest TCAV first", raises),
                         ("Concepts that lower the class, lowest TCAV first", lowers)):
        lines.append(f"{title}:")
        lines.append("CAV accuracies:")
        lines += [f"{s.layer}:{s.concept}:{s.cav_accuracy:.4f}" for s in group]
        lines.append("Mean TCAV scores (mean,std,p-value):")
        lines += [f"{s.layer}:{s.concept}:{s.tcav_mean:.4f},{s.tcav_std:.4f},{s.p_value:.3g}" for s in group]
    lines.append("random_discovery baseline (mean TCAV,std,CAV accuracy):")
    lines += [f"{layer}:random_discovery:{m:.4f},{sd:.4f},{acc:.4f}" for layer, (m, sd, acc) in baselines.items()]
    dropped = [s for s in scores if not s.significant]
    lines.append("Not significant (mean TCAV,std,p-value,CAV accuracy):")
    lines += [f"{s.layer}:{s.concept}:{s.tcav_mean:.4f},{s.tcav_std:.4f},{s.p_value:.3g},{s.cav_accuracy:.4f}"
              for s in dropped]
    return "\n".join(lines) + "\n"


GALLERY_TILE, GALLERY_GAP, GALLERY_TITLE = 112, 4, 20  # pixels


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType: its bitmap font
        return ImageFont.load_default()


def gallery_tile(img: np.ndarray | Image.Image) -> Image.Image:
    """An image (array or Pillow image) as a gallery tile (``GALLERY_TILE`` pixels square)."""
    im = img if isinstance(img, Image.Image) else Image.fromarray(to_uint8(np.asarray(img)))
    if im.size != (GALLERY_TILE, GALLERY_TILE):
        im = im.resize((GALLERY_TILE, GALLERY_TILE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return im


def gallery(path: Path, rows: list[tuple[str, list, list]], n: int = 10) -> None:
    """One row pair per concept under its title: superpixels on top, the segment in its image below
    (tiles of ``GALLERY_TILE`` pixels on white, arrays or ready tiles), composed directly as one image."""
    from PIL import ImageDraw

    tile, gap, title = GALLERY_TILE, GALLERY_GAP, GALLERY_TITLE
    width = n * tile + (n + 1) * gap
    block = title + 2 * tile + 2 * gap
    canvas = Image.new("RGB", (width, max(1, len(rows)) * block + gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    if not rows:
        draw.text((gap, gap), "no significant concept in this layer", fill="black", font=font)
    for r, (text, sps, marked) in enumerate(rows):
        top = r * block + gap
        draw.text((gap, top + 2), text, fill="black", font=font)
        for k, imgs in enumerate((sps, marked)):
            for j, img in enumerate(imgs[:n]):
                canvas.paste(gallery_tile(img), (gap + j * (tile + gap), top + title + k * (tile + gap)))
    save_png(path, np.asarray(canvas))


def write_report(workdir: str, info: RunInfo, scores: list[ConceptScore], results: list[RandomSetScores],
                 concepts_paths: dict[str, str], images_path: str, superpixels: Superpixels,
                 grads_path: str, image_names: list[str], fill: tuple[float, float, float], inputs: ReportInputs,
                 out: list[str]) -> str:
    """Write the report files listed in this module's docstring. ``out``: the stamp that marks them
    current and the summary the folder must hold. Returns the path of ``ace_results.txt``."""
    stamp = out[0]
    wd = WorkDir(workdir)
    target = wd.target(info.target_class)
    info = replace(info, scoring_accuracy=predicted_share(grads_path, info.class_index))
    baselines = {layer: random_baseline(results, layer) for layer in info.layers}
    blocks = extra_blocks(info, scores, concepts_paths, superpixels, image_names, inputs)
    # one writer per class folder at a time (two runs of a class with other flags have other stamps)
    with file_lock(wd.lock(f"report-{class_folder(info.target_class)}")):
        with atomic_dir(target.path) as tmp:
            _write_class_folder(target.rebased(tmp), info, scores, baselines, concepts_paths, images_path,
                                superpixels, image_names, fill, blocks, inputs.scoring)
            if (target.path / "images").is_dir():  # the maps of ace explain-images stay (hard links)
                shutil.copytree(target.path / "images", Path(tmp) / "images", copy_function=os.link)
                link_images_page(target.rebased(tmp).page)
        for stale in Path(stamp).parent.glob("*.json"):  # only the latest stamp says the folder is current
            if stale.name != Path(stamp).name:
                stale.unlink(missing_ok=True)
        write_text(stamp, json.dumps({"summary": str(target.summary_path)}))
    kept = [s for s in scores if s.significant]
    best = max(kept, key=lambda s: s.tcav_mean).concept if kept else "-"
    record_class(wd, info.target_class, "done", f"{len(kept)}/{len(scores)}", best, str(target.summary_path))
    return str(target.summary_path)


def _write_class_folder(target: ClassDir, info: RunInfo, scores: list[ConceptScore], baselines: dict,
                        concepts_paths: dict[str, str], images_path: str, superpixels: Superpixels,
                        image_names: list[str], fill: tuple[float, float, float], blocks: dict,
                        scoring: tuple[str, str] | None = None) -> None:
    """The class folder's files; ``scoring``: the scoring images' and superpixels' tables (the
    evaluation's "where" paints them)."""
    images = read_images(images_path)
    img_dir = target.concept_dir / "images"
    mkdirs(img_dir)
    by_name = {(s.layer, s.concept): s for s in scores}
    # significant concepts, highest mean TCAV first
    kept = {layer: sorted((c for c in read_concepts(concepts_paths[layer])
                           if (layer, c.name) in by_name and by_name[(layer, c.name)].significant),
                          key=lambda c: -by_name[(layer, c.name)].tcav_mean) for layer in info.layers}
    # the masks of every example, read in one pass; each example's superpixel, patch and (first 10)
    # "where" image are made and encoded on two threads (numpy, Pillow's resize and zlib release the GIL)
    examples = sorted({i for layer in info.layers for c in kept[layer] for i in c.examples})
    packed = PackedMasks(superpixels.segments_path, examples)
    views, galleries = [], {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        writes = [pool.submit(save_png, img_dir / f"{i:03d}_{safe_name(Path(name).stem)}.png", img, False)
                  for i, (img, name) in enumerate(zip(images, image_names))]
        for layer in info.layers:
            gallery_rows = []
            for c in kept[layer]:
                s = by_name[(layer, c.name)]
                d = target.concept_dir / concept_folder(layer, c.name)
                for sub in ("superpixels", "patches", "where"):
                    mkdirs(d / sub)
                idx = packed.image_index(c.examples)
                stems = [f"{k:03d}_{i:03d}" for k, i in enumerate(idx)]
                shown = [pool.submit(_write_example, d, stem, images[i], packed, row, superpixels, fill, k < 10)
                         for k, (stem, i, row) in enumerate(zip(stems, idx, c.examples))]
                writes += shown[10:]
                rel = d.relative_to(target.path).as_posix()
                views.append(ConceptView(s, c.size, c.n_images, tuple(f"{rel}/superpixels/{t}.png" for t in stems[:10]),
                                         tuple(f"{rel}/where/{t}.png" for t in stems[:10])))
                gallery_rows.append((f"{c.name}  TCAV {s.tcav_mean:.2f}±{s.tcav_std:.2f}  p={s.p_value:.1e}",
                                     shown[:10]))
            gallery(target.results_dir / f"{safe_name(layer)}.png",
                    [(title, *zip(*(f.result() for f in fs))) if fs else (title, [], []) for title, fs in gallery_rows])
            galleries[layer] = f"results/{safe_name(layer)}.png"
        for w in writes:
            w.result()  # a failed write fails the report
    if blocks.get("evaluation", {}).get("where") and scoring:
        blocks["where"] = write_where(target.results_dir, blocks["evaluation"]["where"], scores,
                                      blocks["evaluation"]["layer"], scoring)
    if blocks.get("evaluation"):  # the per-superpixel assignment stays in the evaluation's cache
        blocks["evaluation"] = {k: v for k, v in blocks["evaluation"].items() if k != "where"}
    text = summary_text(info, scores, baselines)
    if blocks.get("ground_truth"):
        text += "\n".join(ground_truth_lines(blocks["ground_truth"])) + "\n"
    if blocks.get("evaluation"):
        text += "\n".join(evaluation_lines(blocks["evaluation"])) + "\n"
        write_text(target.evaluation_json, json.dumps(blocks["evaluation"], indent=1))
    if blocks.get("where"):
        text += "\n".join(where_lines(blocks["where"])) + "\n"
    write_text(target.summary_path, text)
    write_text(target.page, class_page(info, scores, baselines, views, galleries, blocks))
    examples = {f"{layer}:{c.name}": list(c.examples) for layer in info.layers for c in read_concepts(concepts_paths[layer])}
    write_text(target.summary_json, json.dumps({"run": asdict(info), "concepts": [asdict(s) for s in scores],
                                                "random_discovery": baselines,
                                                "concept_examples": examples, **blocks}, indent=1))


def _write_example(folder: Path, stem: str, image: np.ndarray, packed: PackedMasks, row: int,
                   superpixels: Superpixels, fill: tuple[float, float, float], where: bool):
    """One concept example's ``superpixels/``, ``patches/`` and (``where``) ``where/`` PNGs; returns the
    superpixel and "where" images of a shown example (for the gallery)."""
    mask = packed.mask(row)
    sp = make_superpixel(image, mask, superpixels.size, superpixels.fill)
    save_png(folder / "superpixels" / f"{stem}.png", sp, False)
    save_png(folder / "patches" / f"{stem}.png", make_patch(image, mask, fill), False)
    if not where:
        return None
    marked = highlight(image, mask)
    save_png(folder / "where" / f"{stem}.png", marked, False)
    return gallery_tile(sp), gallery_tile(marked)


def extra_blocks(info: RunInfo, scores: list[ConceptScore], concepts_paths: dict[str, str], superpixels: Superpixels,
                 image_names: list[str], inputs: ReportInputs) -> dict:
    """``ground_truth`` (where the source has part masks, see :mod:`ace.tasks.algorithm.groundtruth`, first layer)
    and ``evaluation`` (SSC/SDC, when it was run) for the json, txt and HTML report."""
    from ace.storage.tables import ArrayTable
    from ace.tasks.algorithm.groundtruth import ground_truth, parts_file

    blocks: dict = {"parameters": json.loads(inputs.parameters)}
    parts = parts_file(image_names)
    clusters = dict(inputs.clusters)
    layer = info.layers[0]
    if parts is not None and layer in clusters:
        concepts = read_concepts(concepts_paths[layer])
        labels = np.asarray(ArrayTable(clusters[layer]).read("label"))
        layer_scores = [s for s in scores if s.layer == layer]
        block = ground_truth(parts, info.target_class, superpixels.segments_path, image_names, superpixels.size,
                             inputs.resize, {c.name: list(c.examples) for c in concepts},
                             {c.name: np.nonzero(labels == c.cluster)[0].tolist() for c in concepts},
                             [s.concept for s in layer_scores if s.significant and s.direction == "raises"],
                             [s.concept for s in layer_scores if s.significant])
        if block is not None:
            blocks["ground_truth"] = {"layer": layer, **block}
    if inputs.evaluation:
        blocks["evaluation"] = ev = json.loads(Path(inputs.evaluation).read_text())
        if ev.get("fidelity"):
            fid = ev["fidelity"]
            blocks["completeness"] = {ev["layer"]: fid["completeness"]}
            blocks["fidelity"] = {ev["layer"]: {"deletion": fid["deletion"], "insertion": fid["insertion"]}}
    return blocks


INDEX_HEADER = "target_class\tstatus\tconcepts_kept\ttop_concept\treport\n"


def record_class(wd: WorkDir, target_class: str, status: str, kept: str, top: str, report: str) -> None:
    """Update the class's line in ``results_summaries/classes.tsv``; link the legacy summary path to
    the first class's summary."""
    with file_lock(wd.lock("class-index")):
        lines = wd.class_index.read_text().splitlines()[1:] if wd.class_index.is_file() else []
        rows = {line.split("\t")[0]: line for line in lines if line}
        rows[target_class] = "\t".join([target_class, status, kept, top, report])
        write_text(wd.class_index, INDEX_HEADER + "".join(rows[k] + "\n" for k in sorted(rows)))
        write_text(wd.index_page, index_page([_index_row(wd, rows[k]) for k in sorted(rows)]))
        legacy = wd.legacy_summary
        if status == "done" and not legacy.exists() and not legacy.is_symlink():
            legacy.symlink_to(os.path.relpath(report, legacy.parent))


def _index_row(wd: WorkDir, line: str) -> dict:
    cls, status, kept, top, report = (line.split("\t") + [""] * 5)[:5]
    page = wd.target(cls).page
    rel = os.path.relpath(page, wd.path) if status == "done" and page.is_file() else ""
    return {"target_class": cls, "status": status, "concepts_kept": kept, "top_concept": top,
            "page": rel.replace(os.sep, "/")}


def read_summary(summary_path: str) -> dict:
    """What a class summary table needs from a finished report: concepts kept and the top one."""
    data = json.loads(Path(summary_path).with_suffix(".json").read_text())
    kept = [c for c in data["concepts"] if c["significant"]]
    top = max(kept, key=lambda c: c["tcav_mean"]) if kept else None
    return {"kept": len(kept), "concepts": len(data["concepts"]),
            "top_concept": f"{top['layer']}:{top['concept']} ({top['tcav_mean']:.2f})" if top else "-"}


def read_stamp(out: list[str]) -> str:
    return json.loads(Path(out[0]).read_text())["summary"]
