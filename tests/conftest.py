"""Test setup: one temporary Prefect server per session, result storage isolated per session."""

import os
import tempfile
from pathlib import Path

import pytest

_RESULTS = tempfile.mkdtemp(prefix="ace_prefect_results_")
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
    from ace.tasks.demo import make_world

    return make_world(tmp_path_factory.mktemp("world"), n_per_class=24, n_random=20, num_random_sets=20)


def zebra_or_skip() -> Path:
    if not SHARED_ZEBRA.is_dir():
        pytest.skip(f"real photos not found at {SHARED_ZEBRA} (the team's shared data; absent outside its machines)")
    return SHARED_ZEBRA
