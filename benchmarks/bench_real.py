"""Wall time and peak RSS of every ACE step on real photos (default: ../shared/data/imagenet_zebra).

    python benchmarks/bench_real.py [--model_to_run efficientnet_lite0 --feature_names _blocks.10]
                                    [--model_to_run resnet18 --model_path resnet18.pth --feature_names layer3]
                                    [--source_dir DIR --working_dir DIR --embedding pooled ...] [--flow]

Runs the flow's own body (``ace.flows.ace_flow.explain``, the code every ``ace`` flow run runs)
without Prefect, through an executor that times each step: its wall time and its peak resident
memory (Linux: VmHWM, reset before each step). Every flag of ``ace run`` is accepted (the same
parameter definition). With ``--flow`` it then runs the whole Prefect flow twice through the CLI
(cold, then cached) in fresh processes and prints both wall times and their ratio. The working
dir is a fresh temporary folder unless given.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ace.flows.cli import build_parser
from ace.flows.steps import LocalSteps
from ace.tasks.params import FLOW_PARAMS

FLOW_NAMES = {p.name for p in FLOW_PARAMS}

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


def _cpu_s() -> float:
    """CPU seconds of every thread of this process so far (OpenVINO's and PyTorch's pools included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class TimedSteps(LocalSteps):
    """:class:`ace.flows.steps.LocalSteps` that prints each step's wall time, CPU time (all cores)
    and peak RSS. On a 2-core machine a step whose CPU time is twice its wall time keeps both busy."""

    def __init__(self):
        self.rows = []

    def run(self, step, *args, label: str, **kwargs):
        _reset_peak()
        t, c = time.perf_counter(), _cpu_s()
        out = super().run(step, *args, label=label, **kwargs)
        dt, cpu = time.perf_counter() - t, _cpu_s() - c
        self.rows.append((f"{step.name} {label}", dt, _peak_mb(), cpu))
        print(f"{self.rows[-1][0][:56]:<56} {dt:8.2f} s {cpu:8.2f} CPU s {self.rows[-1][2]:8.0f} MB peak RSS "
              f"{_rss_mb():8.0f} MB after", flush=True)
        return out


def bench_steps(a) -> None:
    from ace.flows.ace_flow import ace_flow, explain
    from ace.flows.parameters import bind

    steps = TimedSteps()
    params = {k: v for k, v in vars(a).items() if k in FLOW_NAMES}
    explain(bind(ace_flow.fn, params), steps)
    by_step: dict[str, list] = {}
    for name, dt, peak, cpu in steps.rows:
        by_step.setdefault(name.split(" ")[0], []).append((dt, peak, cpu))
    print("\nper step (all its runs):")
    for name, rows in by_step.items():
        print(f"{name:<22} {sum(r[0] for r in rows):8.2f} s {sum(r[2] for r in rows):8.2f} CPU s "
              f"{max(r[1] for r in rows):8.0f} MB peak RSS  ({len(rows)} runs)")
    total, cpu = sum(r[1] for r in steps.rows), sum(r[3] for r in steps.rows)
    print(f"{'total':<22} {total:8.2f} s {cpu:8.2f} CPU s {max(r[2] for r in steps.rows):8.0f} MB peak RSS "
          f"(max over steps); the process: {_cpu_s():.1f} CPU s")


def bench_flow(a) -> None:
    cmd = [sys.executable, str(HERE.parent / "ace_run.py"), "--num_parallel_runs", "0"]
    for name in sorted(FLOW_NAMES):
        value = getattr(a, name)
        if name == "working_dir":
            value = value + "_flow"
        if value is None or value is False or name == "n_jobs":
            continue
        cmd += [f"--{name}", *(map(str, value) if isinstance(value, list) else ([] if value is True and name == "evaluate" else [str(value)]))]
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
    run = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices["run"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[run], add_help=False, conflict_handler="resolve")
    p.set_defaults(source_dir=str(DEFAULT_SOURCE), working_dir=None, target_class=["zebra"],
                   model_to_run="efficientnet_lite0", feature_names=["_blocks.10"])
    for action in p._actions:
        if action.dest in ("source_dir", "working_dir", "target_class"):
            action.required = False
    p.add_argument("--flow", action="store_true", help="also time the whole flow, cold and cached")
    p.add_argument("--no_steps", action="store_true", help="only the flow timing")
    a = p.parse_args()
    a.target_class = a.target_class[0]
    a.feature_names = [n for item in a.feature_names for n in item.split(",") if n]
    if not Path(a.source_dir).is_dir():
        raise SystemExit(f"no source dir {a.source_dir}: pass --source_dir")
    a.working_dir = a.working_dir or tempfile.mkdtemp(prefix="ace_bench_")
    print(f"working dir {a.working_dir}; model {a.model_to_run} layers {a.feature_names}")
    if not a.no_steps:
        bench_steps(a)
    if a.flow or a.no_steps:
        bench_flow(a)


if __name__ == "__main__":
    main()
