"""Wall time and peak RSS of every ACE step on real photos (default: ../shared/data/imagenet_zebra).

    python benchmarks/bench_real.py [--model efficientnet_lite0 --layer _blocks.10]
                                    [--model resnet18 --model_path resnet18.pth --layer layer3]
                                    [--source_dir DIR --working_dir DIR --num_random_exp 20 --max_imgs 50]
                                    [--flow]

Runs the steps' pure functions one after another in this process (no Prefect), printing each
step's wall time and its peak resident memory (Linux: VmHWM, reset before each step). With
``--flow`` it then runs the whole Prefect flow twice through the CLI (cold, then cached) in fresh
processes and prints both wall times and their ratio. The working dir is a fresh temporary
folder unless given.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ace.flows.caching import release_memory

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "imagenet_zebra"


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_mb(field: str = "VmRSS") -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Steps:
    def __init__(self):
        self.rows = []

    def __call__(self, name, fn, *args, **kwargs):
        _reset_peak()
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        release_memory()  # as the flow does after every task
        dt = time.perf_counter() - t
        self.rows.append((name, dt, _peak_mb()))
        print(f"{name:<28} {dt:8.1f} s {self.rows[-1][2]:8.0f} MB peak RSS {_rss_mb():8.0f} MB after", flush=True)
        return out


def bench_steps(a) -> None:
    from ace.storage.keys import content_key
    from ace.storage.layout import WorkDir
    from ace.tasks import cav, cluster, embed, images, models, report, sources, stats, superpixels

    wd = WorkDir(a.working_dir)
    step = Steps()
    m = step("resolve model", models.resolve, a.model, a.model_path, a.labels_path, a.target_class, [a.layer],
             None, a.precision)
    spec, layer = m.spec, a.layer
    sets = step("scan images", images.scan_source, a.source_dir, a.target_class, a.num_random_exp, a.max_imgs, a.min_imgs)
    paths = {}

    def load_class_images():
        for s in [sets.discovery, sets.scoring]:
            paths[s.name] = images.write_images(s, spec.input_size, spec.resize,
                                                str(wd.images(content_key(s.key, spec.input_size, spec.resize))))

    step("load images (class)", load_class_images)
    disc = paths[sets.discovery.name]
    seg = step("superpixels", superpixels.write_segments, disc, "slic", str(wd.segments(content_key(disc, "bench"))), a.n_jobs)
    fill = spec.fill_value("mean")
    sp = sources.Superpixels(disc, seg, spec.input_size, fill)
    acts = step("patches + embed superpixels", embed.write_activations, spec, [layer], sp,
                [str(wd.acts(layer, content_key(sp.key, spec, "bench")))])[0]
    rand = {}

    def embed_randoms():
        for s in [sets.random_discovery, *sets.randoms]:
            src = sources.ImageFiles(s, spec.input_size, spec.resize)
            rand[s.name] = embed.write_activations(spec, [layer], src, [str(wd.acts(layer, content_key(src.key, spec)))])[0]

    step("decode + embed random sets", embed_randoms)
    grads = step("gradients", embed.write_gradients, spec, [layer], paths[sets.scoring.name], m.class_idx,
                 [str(wd.grads(layer, content_key(spec.key, "bench")))])[0]
    cl = step("cluster", cluster.write_clusters, acts, "KM", 25, 0, str(wd.clusters(layer, content_key(acts, "bench"))))
    con = step("filter", cluster.write_concepts, cl, seg, layer, a.target_class, len(sets.discovery), a.min_imgs, a.max_imgs,
               str(wd.concepts_cache(layer, content_key(cl, "bench"))))
    ca = step("concept activations", cav.write_concept_acts, con, acts, str(wd.acts(layer, content_key(con, "bench"))))

    def all_cavs():
        return [cav.score_random_set(con, ca, rand["random_discovery"], rand[r.name], grads, layer, r.name, 0,
                                     str(wd.cavs(layer, r.name, "bench-" + a.cav_solver)), a.cav_solver)
                for r in sets.randoms]

    scores = step(f"CAVs + TCAV ({len(sets.randoms)} sets)", all_cavs)
    tested = step("statistical test", stats.significance, scores)
    info = report.RunInfo(a.target_class, m.class_idx, a.model, (layer,), a.num_random_exp, len(sets.discovery),
                          len(sets.scoring), 0.01, "none")
    step("report", report.write_report, a.working_dir, info, tested, scores,
         {layer: con}, disc, sp, grads, list(sets.discovery.files), fill, str(wd.report_stamp(a.target_class, "bench")))
    total = sum(r[1] for r in step.rows)
    print(f"{'total':<28} {total:8.1f} s {max(r[2] for r in step.rows):8.0f} MB peak RSS (max over steps)")
    print(f"{sum(t.significant for t in tested)} significant concepts of {len(tested)}")


def bench_flow(a) -> None:
    cmd = [sys.executable, str(HERE.parent / "ace_run.py"), "--num_parallel_runs", "0", "--target_class", a.target_class,
           "--source_dir", a.source_dir, "--working_dir", a.working_dir + "_flow", "--model_to_run", a.model,
           "--feature_names", a.layer, "--num_random_exp", str(a.num_random_exp), "--max_imgs", str(a.max_imgs),
           "--min_imgs", str(a.min_imgs), "--cav_solver", a.cav_solver, "--precision", a.precision]
    if a.model_path:
        cmd += ["--model_path", a.model_path]
    if a.labels_path:
        cmd += ["--labels_path", a.labels_path]
    times = []
    for label in ("cold", "cached"):
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd,
                           capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode:
            print(r.stdout[-3000:], r.stderr[-3000:])
            raise SystemExit(f"flow run failed ({label})")
        peak = r.stderr.strip().splitlines()[-1]
        print(f"flow {label:<23} {times[-1]:8.1f} s {int(peak) / 1024 if peak.isdigit() else float('nan'):8.0f} MB peak RSS")
    print(f"cached run is {times[0] / times[1]:.1f}x faster")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source_dir", default=str(DEFAULT_SOURCE))
    p.add_argument("--working_dir", default=None)
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--model_path", default=None)
    p.add_argument("--labels_path", default=None)
    p.add_argument("--layer", default="_blocks.10")
    p.add_argument("--num_random_exp", type=int, default=20)
    p.add_argument("--max_imgs", type=int, default=50)
    p.add_argument("--min_imgs", type=int, default=30)
    p.add_argument("--n_jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cav_solver", default="exact", choices=["sgd", "exact"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--flow", action="store_true", help="also time the whole flow, cold and cached")
    p.add_argument("--no_steps", action="store_true", help="only the flow timing")
    a = p.parse_args()
    if not Path(a.source_dir).is_dir():
        raise SystemExit(f"no source dir {a.source_dir}: pass --source_dir")
    a.working_dir = a.working_dir or tempfile.mkdtemp(prefix="ace_bench_")
    print(f"working dir {a.working_dir}; model {a.model} layer {a.layer}")
    if not a.no_steps:
        bench_steps(a)
    if a.flow or a.no_steps:
        bench_flow(a)


if __name__ == "__main__":
    main()
