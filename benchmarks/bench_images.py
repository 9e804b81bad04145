"""``ace explain-images`` on real photos: its cost against its floor, and where the concepts are.

    python benchmarks/bench_images.py [--working_dir WD] [--embedding pooled] [--evaluate]

Runs the seed's command (EfficientNet-Lite0 ``_blocks.10``, defaults; skipped when WD already holds
the class), then, as a user does (``python -m ace.flows.cli explain-images``, a fresh process):
the class's 50 scoring photos and 20 random photos, and prints

* the command's wall time, the class-run tasks it found ``Cached`` (all of them, or it says which
  were not) and its floor: the forward passes it needs (each superpixel in crop mode or each image
  in pooled mode, plus the occlusion variants and a gradient pass per image), at the same batch
  size and precision;
* the share of each photo's pixels painted with a concept that raises the class, zebra photos
  against random photos;
* with ``--evaluate``: ``ace evaluate`` of the class, then its completeness and deletion AOPC by order.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "imagenet_zebra"
LABELS = HERE.parent.parent / "shared" / "data" / "imagenet_class_index.json"


def command(*args: str) -> tuple[float, str]:
    t = time.perf_counter()
    entry = ["-m", "ace.flows.cli"] if args[0] in ("explain-images", "evaluate") else [str(HERE.parent / "ace_run.py")]
    r = subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return time.perf_counter() - t, r.stderr + r.stdout


def floor_seconds(wd: Path, images: list[Path], params: dict) -> tuple[int, float]:
    """The forward passes explain-images needs for ``images`` and their time alone (batch, precision as the run)."""
    import torch

    from ace.tasks.algorithm.forward import layer_activations
    from ace.tasks.algorithm.images import decode_image
    from ace.tasks.algorithm.superpixels import superpixel_masks
    from ace.tasks.models.loader import compute_device, resolve, using_model
    from ace.tasks.models.precision import autocast, resolve_precision

    m = resolve(params["model_to_run"], params["model_path"], params["labels_path"], params["target_class"],
                params["feature_names"])
    passes = 0
    for f in images:
        data = json.loads(next((wd / "classes" / params["target_class"] / "images").glob(f"*/{f.stem}/map.json")).read_text())
        n_sp = 1 if params["embedding"] == "pooled" else len(superpixel_masks(
            decode_image(f, m.spec.input_size, m.spec.resize), params["superpixel_method"])[0])
        passes += n_sp + 1 + 2 * len(data["concepts"]) + 1  # superpixels, image, occlusion variants, gradient
    batch = params["batch_size"]
    x = torch.rand(batch, 3, m.spec.input_size, m.spec.input_size).contiguous(memory_format=torch.channels_last)
    prec = resolve_precision(params["precision"], compute_device())
    with using_model(m.spec) as model, autocast(prec, x.device):
        layer_activations(model, list(m.layers), x[:2])
        t = time.perf_counter()
        for _ in range(max(1, passes // batch)):
            model(x)
    return passes, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--working_dir", default=None)
    p.add_argument("--embedding", default="crop", choices=["crop", "pooled"])
    p.add_argument("--evaluate", action="store_true")
    a = p.parse_args()
    wd = Path(a.working_dir or tempfile.mkdtemp(prefix="ace_images_"))
    run = ["--num_parallel_runs", "0", "--target_class", "zebra", "--source_dir", str(SOURCE), "--working_dir", str(wd),
           "--model_to_run", "efficientnet_lite0", "--labels_path", str(LABELS), "--feature_names", "_blocks.10",
           "--num_random_exp", "20", "--max_imgs", "50", "--min_imgs", "30", "--embedding", a.embedding]
    if not (wd / "classes" / "zebra" / "results_summaries" / "ace_results.json").is_file():
        t, _ = command(*run)
        print(f"class run (cold): {t:.1f} s")
    params = json.loads((wd / "classes" / "zebra" / "results_summaries" / "ace_results.json").read_text())["parameters"]
    zebra = sorted(p for p in (SOURCE / "zebra").iterdir() if p.is_file())[50:100]
    randoms = sorted(p for p in (SOURCE / "random500_19").iterdir() if p.is_file())[:20]
    t, log = command("explain-images", "--working_dir", str(wd), "--target_class", "zebra", *map(str, zebra + randoms))
    states = dict(re.findall(r"Task run '([^']+)' - Finished in state (\w+)", log))
    ours = ("concept-table-", "explain-image-", "images-page-")
    not_cached = [n for n, s in states.items() if not n.startswith(ours) and s != "Cached"]
    passes, floor = floor_seconds(wd, zebra + randoms, params)
    print(f"explain-images, {len(zebra) + len(randoms)} photos: {t:.1f} s; class-run tasks "
          f"{'all Cached' if not not_cached else 'NOT cached: ' + ', '.join(not_cached)}; floor: {passes} forward "
          f"passes in {floor:.1f} s, the command is {t / floor:.2f}x that")
    cover, per_concept = {}, {}
    for name, group in (("zebra", zebra), ("random", randoms)):
        shares = []
        for f in group:
            folder = next((wd / "classes" / "zebra" / "images").glob(f"*/{f.stem}"))
            data = json.loads((folder / "map.json").read_text())
            shares.append(sum(c["area_share"] for c in data["concepts"] if c["direction"] == "raises"))
            for c in data["concepts"]:
                per_concept.setdefault((c["concept"], c["direction"]), {"zebra": 0.0, "random": 0.0})[name] += \
                    c["area_share"] / len(group)
        cover[name] = float(np.mean(shares))
    print(f"pixels painted with a concept that raises 'zebra': zebra photos {cover['zebra']:.1%}, "
          f"random photos {cover['random']:.1%}")
    tcav = {c["concept"]: c["tcav_mean"] for c in json.loads(
        (wd / "classes" / "zebra" / "results_summaries" / "ace_results.json").read_text())["concepts"]}
    print("| concept | direction | mean TCAV | zebra photos' pixels | random photos' pixels |\n| --- | --- | --- | --- | --- |")
    for (concept, direction), share in sorted(per_concept.items(), key=lambda kv: -tcav.get(kv[0][0], 0)):
        print(f"| {concept} | {direction} | {tcav.get(concept, float('nan')):.2f} | {share['zebra']:.1%} | "
              f"{share['random']:.1%} |")
    if a.evaluate:
        t, _ = command("evaluate", "--working_dir", str(wd), "--target_class", "zebra")
        data = json.loads((wd / "classes" / "zebra" / "results_summaries" / "ace_results.json").read_text())
        (layer, value), = data["completeness"].items()
        aopc = {o: round(d["aopc"], 3) for o, d in data["fidelity"][layer]["deletion"].items()}
        print(f"ace evaluate: {t:.1f} s; completeness {value:.3f}; deletion AOPC by order {aopc}")
    print(f"working dir {wd}")


if __name__ == "__main__":
    main()
