"""The steps' tasks on a real Prefect server: named for what they work on, and cached on their code
version (a changed step and the steps after it recompute; the rest stay Cached)."""

import logging
import time
from pathlib import Path

import pytest

from ace.tasks.models.backends import openvino_available
from tests.conftest import run


def _task_runs(flow_run_id, until=lambda names: True) -> dict[str, str]:
    """The flow run's name and its task runs' final states, once every task run the server knows is
    final and ``until(names)`` holds (task runs reach the server as events: some may not be there yet)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:  # task run states reach the server as events, shortly after the flow run ends
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = all(r.state is not None and r.state.is_final() for r in runs)
            if (final and until([r.name for r in runs])) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        flow_run = client.read_flow_run(flow_run_id)
    return flow_run.name, {r.name: r.state.name for r in runs}


@pytest.fixture(scope="module")
def two_runs(prefect_harness, demo_world, tmp_path_factory):
    """The demo class run twice in one working dir, the second time with the cluster step's code
    version bumped (as an upgrade that changed clustering would)."""
    from ace.tasks.versions import STEP_VERSIONS

    kwargs = dict(target_class="disc_square", source_dir=str(demo_world),
                  working_dir=str(tmp_path_factory.mktemp("versions")), model_to_run="ace_demo_cnn",
                  labels_path=str(demo_world / "labels.txt"), feature_names=["block3"], num_random_exp=3, max_imgs=8,
                  min_imgs=4, n_clusters=6, n_jobs=2)
    first = run(**kwargs, return_state=True)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("prefect").addHandler(handler)
    before = STEP_VERSIONS["cluster"]
    STEP_VERSIONS["cluster"] = before + 1
    try:
        second = run(**kwargs, return_state=True)
    finally:
        STEP_VERSIONS["cluster"] = before
        logging.getLogger("prefect").removeHandler(handler)
    assert first.is_completed() and second.is_completed()
    return kwargs, _task_runs(first.state_details.flow_run_id), _task_runs(second.state_details.flow_run_id), records


def test_every_task_run_is_named_for_what_it_works_on(two_runs):
    _, (flow_name, first), _, _ = two_runs
    assert flow_name == "ace-disc_square"
    expected = {"resolve-model-ace_demo_cnn-disc_square", "scan-images-disc_square", "load-images-disc_square-discovery",
                "load-images-disc_square-scoring", "superpixels-disc_square-discovery",
                "embed-random_discovery-block3", "embed-disc_square-superpixels-block3",
                "gradients-disc_square-scoring-block3", "cluster-disc_square-block3",
                "filter-concepts-disc_square-block3", "concept-activations-disc_square-block3",
                "statistical-test-disc_square", "report-disc_square"}
    expected |= {f"embed-random500_{i}-block3" for i in range(3)}
    expected |= {f"cav-tcav-disc_square-block3-random500_{i}" for i in range(3)}
    if openvino_available():  # --backend auto: the model is converted in a step of its own
        expected.add("compile-model-ace_demo_cnn-block3")
    assert set(first) == expected, sorted(set(first) ^ expected)
    # in a fresh working dir every step that writes files runs; the model's resolution and the scan are
    # cached by the server across working dirs (another test may have made them)
    cached = {n for n, state in first.items() if state != "Completed"}
    assert cached <= {"resolve-model-ace_demo_cnn-disc_square", "scan-images-disc_square"}, first


def test_a_changed_step_recomputes_itself_and_its_dependants_only(two_runs):
    kwargs, _, (_, second), records = two_runs
    recomputed = {n for n, state in second.items() if state == "Completed"}
    cached = {n for n, state in second.items() if state == "Cached"}
    assert recomputed | cached == set(second), second
    after = ("cluster-", "filter-concepts-", "concept-activations-", "cav-tcav-", "statistical-test-", "report-")
    assert recomputed == {n for n in second if n.startswith(after)}, second
    assert {n.split("-disc_square")[0].split("-random")[0].split("-ace_demo")[0] for n in cached} == {
        "resolve-model", "scan-images", "load-images", "superpixels", "embed", "gradients",
        *(["compile-model"] if openvino_available() else [])}
    said = [r.getMessage() for r in records if "changed since" in r.getMessage()]
    from ace.tasks.versions import STEP_VERSIONS

    before = STEP_VERSIONS["cluster"]
    bumped = f"cluster ({before} -> {before + 1})"
    assert len(said) == 1 and bumped in said[0] and "embed" in said[0].split("reused")[1], said
    versions = (Path(kwargs["working_dir"]) / "cache" / "versions.json").read_text()
    assert f'"cluster": {before + 1}' in versions  # the record says which code last wrote here
