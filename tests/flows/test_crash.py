"""Crash safety: ``kill -9`` in the CAV stage loses no finished work; processes sharing a working
directory compute shared results once and never corrupt each other."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def command(kwargs: dict, working_dir: Path, target_class: str | None = None) -> list[str]:
    return [sys.executable, str(ROOT / "ace_run.py"), "--target_class", target_class or kwargs["target_class"],
            "--source_dir", kwargs["source_dir"], "--working_dir", str(working_dir), "--model_to_run",
            kwargs["model_to_run"], "--labels_path", kwargs["labels_path"], "--feature_names", "block3",
            "--num_random_exp", str(kwargs["num_random_exp"]), "--max_imgs", str(kwargs["max_imgs"]),
            "--min_imgs", str(kwargs["min_imgs"]), "--n_clusters", str(kwargs["n_clusters"])]


def concepts(wd: Path, cls: str = "disc_square") -> list:
    return json.loads((wd / "classes" / cls / "results_summaries" / "ace_results.json").read_text())["concepts"]


def flow_run_states(env: dict) -> list[str]:
    req = urllib.request.Request(env["PREFECT_API_URL"] + "/flow_runs/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [run["state_type"] for run in json.load(r)]


def test_kill_9_in_the_cav_stage_then_rerun(demo_run, prefect_server, tmp_path):
    kwargs, summary = demo_run
    cavs = tmp_path / "cavs" / "block3"
    proc = subprocess.Popen(command(kwargs, tmp_path), env=prefect_server, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(cavs.glob("*.npz"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cavs.glob("*.npz")}
    assert 3 <= len(before) < kwargs["num_random_exp"], f"the kill came too late: {len(before)} CAV files"
    assert "RUNNING" in flow_run_states(prefect_server)

    out = subprocess.run(command(kwargs, tmp_path), env=prefect_server, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cavs.glob("*.npz")}
    assert len(after) == kwargs["num_random_exp"]
    assert {k: after[k] for k in before} == before  # finished CAVs untouched
    assert concepts(tmp_path) == concepts(summary.parents[3])  # the report equals an uninterrupted run's
    assert not list(tmp_path.rglob("*.part"))
    states = flow_run_states(prefect_server)
    assert "CRASHED" in states and "RUNNING" not in states  # the killed run was marked Crashed


def test_three_processes_on_one_fresh_working_dir(demo_run, prefect_server, tmp_path):
    kwargs, summary = demo_run
    classes = ["disc_square", "disc_square", "triangle_stripes"]
    procs = [subprocess.Popen(command(kwargs, tmp_path, c), env=prefect_server, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) for c in classes]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    assert concepts(tmp_path) == concepts(summary.parents[3])
    assert concepts(tmp_path, "triangle_stripes")
    # shared results (decoded random sets, their activations) were computed by one process, read by the others
    assert sum(err.count("is already written (by another run)") for _, err in outs) >= 2
    assert not list(tmp_path.rglob("*.part"))
