"""The activation backends side by side on real photos: agreement with PyTorch fp32, and throughput.

    python benchmarks/bench_backends.py [--source_dir ../shared/data/imagenet_zebra]
        [--model_to_run efficientnet_lite0 --feature_names _blocks.10] [--labels_path ...] [--n 64]

For ``--n`` photos of the class folder and as many superpixel crops of them (the inputs of crop
mode: one SLIC superpixel per photo, filled and resized as ACE does), prints per backend and
precision (PyTorch eager, OpenVINO) the smallest and the mean per-row cosine of the layer's full
activation to PyTorch fp32, and the forward passes per second at batch 32 (the passes alone).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "imagenet_zebra"
LABELS = HERE.parent.parent / "shared" / "data" / "imagenet_class_index.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source_dir", default=str(SOURCE))
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--model_to_run", default="efficientnet_lite0")
    p.add_argument("--model_path", default=None)
    p.add_argument("--labels_path", default=str(LABELS))
    p.add_argument("--feature_names", default="_blocks.10")
    p.add_argument("--n", type=int, default=64)
    a = p.parse_args()

    from ace.tasks.algorithm.forward import layer_activations, to_input
    from ace.tasks.algorithm.images import decode_image
    from ace.tasks.algorithm.patches import make_superpixel
    from ace.tasks.algorithm.superpixels import superpixel_masks
    from ace.tasks.models.backends import OpenVINOActivations
    from ace.tasks.models.loader import resolve, using_model
    from ace.tasks.models.precision import autocast

    layer = a.feature_names
    m = resolve(a.model_to_run, a.model_path, a.labels_path, a.target_class, [layer], precision="fp32")
    spec = m.spec
    files = sorted(f for f in (Path(a.source_dir) / a.target_class).iterdir() if f.is_file())[:a.n]
    photos = np.stack([decode_image(f, spec.input_size, spec.resize) for f in files])
    crops = []
    for img in photos:
        masks, _ = superpixel_masks(img, "slic")
        crops.append(make_superpixel(img, masks[len(masks) // 2], spec.input_size, spec.fill_value()))
    raw = {"photos": photos, "superpixels": np.stack(crops)}
    inputs = {k: to_input(v, spec) for k, v in raw.items()}
    folder = tempfile.mkdtemp(prefix="ace_backends_")
    print(f"{a.model_to_run} `{layer}`, {len(files)} photos and {len(crops)} superpixels of '{a.target_class}'\n")
    print("| backend | precision | min cosine to PyTorch fp32 (photos, superpixels) | mean cosine | passes/s (batch 32) |")
    print("| --- | --- | --- | --- | --- |")
    with using_model(spec) as model:
        ref = {k: layer_activations(model, [layer], x)[layer].float() for k, x in inputs.items()}
        for backend in ("torch", "openvino"):
            for precision in ("fp32", "bf16"):
                s = replace(spec, precision=precision, backend=backend)
                if backend == "openvino":
                    runner = OpenVINOActivations(model, s, [layer], folder)
                    run = lambda k: runner(raw[k])[layer]  # noqa: E731
                else:
                    def run(k, s=s):
                        with autocast(s.precision, torch.device("cpu")):
                            return layer_activations(model, [layer], inputs[k])[layer]
                mins, means = [], []
                for k, x in inputs.items():
                    cos = torch.nn.functional.cosine_similarity(run(k).float().reshape(len(x), -1),
                                                                ref[k].reshape(len(x), -1))
                    mins.append(cos.min().item())
                    means.append(cos.mean().item())
                run("superpixels")
                t = time.perf_counter()
                for _ in range(4):
                    run("superpixels")
                rate = 4 * len(inputs["superpixels"]) / (time.perf_counter() - t)
                print(f"| {backend} | {precision} | {mins[0]:.5f}, {mins[1]:.5f} | {np.mean(means):.5f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
