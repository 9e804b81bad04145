"""What a class's steps share in memory does not outlive the class: once the statistical test has
run (after every CAV task of the class), the arrays the CAV tasks shared are gone, in either runner."""

import json

import numpy as np
import pytest

from ace.flows.steps import STATISTICAL_TEST, LocalSteps
from ace.storage.tables import write_table
from ace.tasks.algorithm import cav


@pytest.fixture
def scored_random_set(tmp_path):
    rng = np.random.default_rng(0)
    concepts = tmp_path / "concepts.json"
    concepts.write_text(json.dumps({"concepts": [
        {"name": "c_concept1", "cluster": 0, "size": 6, "n_images": 6, "examples": [0, 1, 2, 3, 4, 5]}]}))
    acts = tmp_path / "acts.parquet"
    write_table(acts, act=(rng.normal(size=(8, 4, 3, 3)) + 1).astype(np.float32))
    concept_acts = cav.write_concept_acts(str(concepts), str(acts), str(tmp_path / "concept_acts.parquet"))
    rd, rnd, grads = (tmp_path / f"{n}.parquet" for n in ("rd", "random", "grads"))
    write_table(rd, act=rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    write_table(rnd, act=rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    write_table(grads, grad=rng.normal(size=(5, 4, 3, 3)).astype(np.float32))
    cav.release_shared()
    return cav.score_random_set(str(concepts), concept_acts, str(rd), str(rnd), str(grads), "block3", "random500_0",
                                seed=0, solver="exact", out=str(tmp_path / "cavs.npz"))


def test_the_cav_tasks_arrays_go_with_the_statistical_test(scored_random_set):
    assert cav._shared.cache_info().currsize == 3  # gradients, random_discovery's, the concepts'
    scores = LocalSteps().run(STATISTICAL_TEST, [scored_random_set], label="test")
    assert [s.concept for s in scores] == ["c_concept1"]
    assert cav._shared.cache_info().currsize == 0


def test_the_prefect_task_lets_them_go_too(scored_random_set):
    assert cav._shared.cache_info().currsize == 3
    STATISTICAL_TEST.task.fn([scored_random_set], label="test")  # the task's own body, as a worker runs it
    assert cav._shared.cache_info().currsize == 0
