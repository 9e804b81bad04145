"""The Python API (ace.ACE, ace.load): the documented example runs, and its results are the command
line's, on the demo world and on real photos."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_LABELS, forbid

ROOT = Path(__file__).resolve().parents[2]


def _numbers(result) -> list[tuple]:
    return [(c.layer, c.name, c.tcav_mean, c.tcav_std, c.p_value, c.significant, c.direction, c.scores, c.examples)
            for c in result.concepts]


def test_the_documented_example_equals_ace_run(prefect_server, prefect_harness, tmp_path, monkeypatch):
    """docs/python.md's example, as written (runner="local"); then `ace run` with the same flags in
    another working dir gives the same concepts and scores; then fit(runner="prefect") in the
    command's working dir reuses everything, and load() reads it."""
    import matplotlib

    matplotlib.use("Agg")
    code = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/python.md", "exec"), scope)
    result = scope["result"]
    assert [c.direction for c in result.raising] == ["raises", "raises"] and len(result.concepts) == 2
    assert scope["images"].shape == (5, 64, 64, 3) and scope["fig"].axes

    argv = ["--target_class", "disc_square", "--source_dir", str(tmp_path / "ace_world"), "--working_dir",
            str(tmp_path / "cli"), "--model_to_run", "ace_demo_cnn", "--feature_names", "block3", "--labels_path",
            str(tmp_path / "ace_world" / "labels.txt"), "--max_imgs", "40", "--min_imgs", "15", "--n_clusters", "4"]
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), *argv], capture_output=True, text=True,
                         env=prefect_server, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from ace import ACE, load

    cli = load(tmp_path / "cli", "disc_square")
    assert _numbers(cli) == _numbers(result)
    assert cli.random_baseline == result.random_baseline
    paths = ("working_dir", "labels_path")
    assert {k: v for k, v in cli.parameters.items() if k not in paths} == \
        {k: v for k, v in result.parameters.items() if k not in paths}

    # this flow runs on another Prefect server than the command's: the steps without files (the model's
    # resolution, the scan, the t-test) run again; every other finds its files and reads them
    calls = forbid(monkeypatch, allowed=("resolve", "scan_source", "significance"))
    again = ACE(**{"model": "ace_demo_cnn", "layers": "block3", "labels_path": str(tmp_path / "ace_world" / "labels.txt"),
                   "max_imgs": 40, "min_imgs": 15, "n_clusters": 4}).fit("disc_square", tmp_path / "ace_world",
                                                                          tmp_path / "cli").result_
    assert _numbers(again) == _numbers(cli) and sorted(calls) == ["resolve", "scan_source", "significance"]


def test_the_api_on_real_photos_equals_the_flow(zebra_run, tmp_path):
    """The API without Prefect on the zebra photos: the same concepts and scores as the flow's run."""
    from ace import ACE, load

    from tests.conftest import SHARED_ZEBRA

    wd, _ = zebra_run
    ace = ACE(model="efficientnet_lite0", layers=["_blocks.10"],
              labels_path=str(SHARED_LABELS) if SHARED_LABELS.exists() else None, num_random_exp=3, max_imgs=10,
              min_imgs=5, n_clusters=40, n_jobs=2)
    ours = ace.fit("zebra", SHARED_ZEBRA, tmp_path / "wd", runner="local").result_
    theirs = load(wd, "zebra")
    assert _numbers(ours) == _numbers(theirs) and ours.concepts
    assert ours.model == "efficientnet_lite0" and ours.layers == ("_blocks.10",)


def test_unknown_runner_and_missing_class():
    from ace import ACE, load

    with pytest.raises(ValueError, match="runner"):
        ACE().fit("zebra", "src", "wd", runner="dask")
    with pytest.raises(FileNotFoundError, match="no report of class 'zebra'"):
        load("/nonexistent", "zebra")
