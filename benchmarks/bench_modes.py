"""The seed's command in every mode, side by side, as a user runs it (``python ace_run.py``, a fresh
process, Prefect start-up included).

    python benchmarks/bench_modes.py [--model efficientnet_lite0 --layer _blocks.10]
                                     [--model resnet18 --model_path resnet18.pth --layer layer3]
                                     [--modes crop:auto:exact crop:auto:sgd pooled:auto:exact crop:fp32:exact]

For each mode (``embedding:precision:cav_solver``) it prints: the cold run's wall time and peak RSS,
the CAV stage's share of it (from the first to the last ``cav-tcav`` task), the working dir's size
per folder, the second (fully cached) run's wall time, and the marginal cost of a second class in
the same working dir (its own cold command: everything class-independent is reused). Then the
throughput floor: forward passes alone, at the same batch size and precision, for as many inputs as
the run embeds. The second class is a folder of other photos (by default the last random set's,
linked into a temporary source dir as ``tiger``): its concepts mean nothing, its cost is real.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ace.tasks.versions import STEP_VERSIONS

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "imagenet_zebra"
LABELS = HERE.parent.parent / "shared" / "data" / "imagenet_class_index.json"


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def run(a, source: Path, wd: Path, target: str | list[str], mode: str) -> tuple[float, float, str]:
    embedding, precision, solver = mode.split(":")
    targets = [target] if isinstance(target, str) else list(target)
    cmd = [sys.executable, str(HERE.parent / "ace_run.py"), "--num_parallel_runs", "0", "--target_class", *targets,
           "--source_dir", str(source), "--working_dir", str(wd), "--model_to_run", a.model, "--labels_path",
           str(a.labels_path), "--feature_names", a.layer, "--num_random_exp", str(a.num_random_exp), "--max_imgs",
           str(a.max_imgs), "--min_imgs", str(a.min_imgs), "--embedding", embedding, "--precision", precision,
           "--cav_solver", solver]
    if a.model_path:
        cmd += ["--model_path", a.model_path]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the temporary server, as users get it
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode:
        print(r.stderr[-3000:])
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    peak = re.findall(r"PEAK_KB (\d+)", r.stderr)
    return dt, int(peak[-1]) / 1024 if peak else float("nan"), r.stderr


def cav_seconds(log: str) -> float:
    """From the end of the step before the CAV tasks to the last CAV task's end (log timestamps)."""
    stamps = []
    for line in log.splitlines():
        m = re.match(r"(\d\d:\d\d:\d\d\.\d+) \| INFO .*Task run '([^']+)' - Finished", line)
        if m:  # task runs are named <step>-<what it works on>
            step = next((s for s in sorted(STEP_VERSIONS, key=len, reverse=True) if m[2].startswith(s + "-")), m[2])
            stamps.append((datetime.strptime(m[1], "%H:%M:%S.%f"), step))
    cav = [t for t, name in stamps if name == "cav-tcav"]
    before = [t for t, name in stamps if name != "cav-tcav" and cav and t <= cav[0]]
    return (cav[-1] - before[-1]).total_seconds() if cav and before else float("nan")


def forward_passes(wd: Path, mode: str) -> int:
    """How many images the first class's cold run fed the model to embed (superpixels or discovery
    images, and every random image), from its working dir."""
    from ace.storage.tables import ArrayTable

    n = 0
    for path in wd.glob("acts/*/*.parquet"):
        t = ArrayTable(path)
        if "concept" not in t.columns and t.meta.get("embedding") != "pooled":
            n += t.num_rows
    if mode.startswith("pooled"):
        n += a_max_imgs(wd)
    return n


def a_max_imgs(wd: Path) -> int:
    from ace.storage.tables import ArrayTable

    return max((ArrayTable(p).num_rows for p in wd.glob("cache/images/*.parquet")), default=0)


def second_class_source(a, root: Path) -> Path:
    """The source dir with a second class, ``tiger``, made of another folder's photos (links)."""
    src = root / "source"
    src.mkdir()
    for d in Path(a.source_dir).iterdir():
        if d.is_dir():
            (src / d.name).symlink_to(d.resolve())
    (src / "tiger").symlink_to(Path(a.second_class_dir).resolve())
    return src


def floor(a, n_inputs: int, precision: str, embedding: str) -> float:
    """Seconds for ``n_inputs`` forward passes alone (random inputs, same batch size and precision)."""
    import torch

    from ace.tasks.algorithm.forward import layer_activations
    from ace.tasks.models.loader import compute_device, resolve, using_model
    from ace.tasks.models.precision import autocast, resolve_precision

    m = resolve(a.model, a.model_path, str(a.labels_path), a.target_class, [a.layer])
    prec = resolve_precision(precision, compute_device())
    x = torch.rand(32, 3, m.spec.input_size, m.spec.input_size).contiguous(memory_format=torch.channels_last)
    with using_model(m.spec) as model:
        x = x.to(next(model.parameters()).device)
        with autocast(prec, x.device):
            layer_activations(model, list(m.layers), x[:4])  # warm-up
            t = time.perf_counter()
            for _ in range(max(1, n_inputs // 32)):
                layer_activations(model, list(m.layers), x)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source_dir", default=str(DEFAULT_SOURCE))
    p.add_argument("--second_class_dir", default=None, help="photos of the second class (default: the last random set)")
    p.add_argument("--labels_path", default=str(LABELS))
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--model_path", default=None)
    p.add_argument("--layer", default="_blocks.10")
    p.add_argument("--num_random_exp", type=int, default=20)
    p.add_argument("--max_imgs", type=int, default=50)
    p.add_argument("--min_imgs", type=int, default=30)
    p.add_argument("--modes", nargs="+", default=["crop:auto:exact", "crop:auto:sgd", "pooled:auto:exact",
                                                  "crop:fp32:exact"])
    p.add_argument("--keep", action="store_true", help="keep the working dirs (printed)")
    p.add_argument("--same_command", action="store_true",
                   help="also run both classes in one command and print the second one's marginal cost")
    a = p.parse_args()
    a.second_class_dir = a.second_class_dir or str(Path(a.source_dir) / f"random500_{a.num_random_exp - 1}")
    root = Path(tempfile.mkdtemp(prefix="ace_modes_"))
    source = second_class_source(a, root)
    rows = []
    for mode in a.modes:
        wd = root / mode.replace(":", "_")
        cold, peak, log = run(a, source, wd, a.target_class, mode)
        cav = cav_seconds(log)
        n_forward = forward_passes(wd, mode)
        sizes = {d.name: du_mb(d) for d in sorted(wd.iterdir()) if d.is_dir()}
        total = du_mb(wd)
        cached, _, _ = run(a, source, wd, a.target_class, mode)
        second, second_peak, _ = run(a, source, wd, "tiger", mode)
        both = ""
        if a.same_command:  # both classes in one command (one process, one Prefect start-up)
            t_both, _, _ = run(a, source, root / (mode.replace(":", "_") + "_both"), [a.target_class, "tiger"], mode)
            both = f"  in one command with the first: +{t_both - cold:.1f} s ({(t_both - cold) / cold:.0%})"
        rows.append((mode, cold, peak, cav, total, cached, second, n_forward))
        print(f"{mode:<16} cold {cold:6.1f} s  peak {peak:6.0f} MB  CAV stage {cav:5.1f} s ({cav / cold:4.1%})  "
              f"working dir {total:5.0f} MB ({', '.join(f'{k} {v:.0f}' for k, v in sizes.items())})  "
              f"cached {cached:5.1f} s  second class {second:5.1f} s ({second / cold:4.0%}, peak {second_peak:.0f} MB)"
              f"{both}",
              flush=True)
    for mode, cold, *_, n in rows:
        embedding, precision, _ = mode.split(":")
        t = floor(a, n, precision, embedding)
        print(f"floor {mode:<16} {n} forward passes alone (batch 32) take {t:5.1f} s; the cold run is {cold / t:.1f}x that")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"working dirs in {root}")


if __name__ == "__main__":
    main()
