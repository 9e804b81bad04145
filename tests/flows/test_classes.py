"""Many classes in one working directory: apart, never mixed, shared work done once."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import forbid, run

ROOT = Path(__file__).resolve().parents[2]


def report(wd: Path, cls: str) -> dict:
    return json.loads((wd / "classes" / cls / "results_summaries" / "ace_results.json").read_text())


def test_a_second_class_reuses_every_random_set_and_leaves_the_first_alone(demo_run, monkeypatch, tmp_path):
    kwargs, summary = demo_run
    wd = tmp_path / "wd"  # a copy of the demo run's working dir: other tests expect it to hold one class
    shutil.copytree(kwargs["working_dir"], wd, symlinks=True)
    kwargs = {**kwargs, "working_dir": str(wd)}
    summary = wd / "classes" / "disc_square" / "results_summaries" / "ace_results.txt"
    first = summary.read_text()
    first_files = sorted(p.relative_to(wd) for p in (wd / "classes" / "disc_square").rglob("*"))
    calls = forbid(monkeypatch, allowed=("resolve", "scan_source", "write_images", "write_segments",
                                         "write_activations", "write_gradients", "write_clusters", "write_concepts",
                                         "write_concept_acts", "score_random_set", "significance", "write_report"))
    out = Path(run(**{**kwargs, "target_class": "triangle_stripes"}))
    # only the new class's images (discovery, scoring) and superpixels are decoded and embedded
    assert calls.count("write_images") == 2 and calls.count("write_activations") == 1, calls
    assert out == wd / "classes" / "triangle_stripes" / "results_summaries" / "ace_results.txt"
    assert summary.read_text() == first
    assert sorted(p.relative_to(wd) for p in (wd / "classes" / "disc_square").rglob("*")) == first_files
    ours = report(wd, "triangle_stripes")
    assert ours["run"]["target_class"] == "triangle_stripes"
    assert all(c["concept"].startswith("triangle_stripes_concept") for c in ours["concepts"])
    # the legacy path still shows the first class; the index lists both
    assert (wd / "results_summaries" / "ace_results.txt").read_text() == first
    index = (wd / "results_summaries" / "classes.tsv").read_text().splitlines()
    assert [line.split("\t")[:2] for line in index[1:]] == [["disc_square", "done"], ["triangle_stripes", "done"]]
    # the same class explained alone gives the same report
    monkeypatch.undo()
    run(**{**kwargs, "target_class": "triangle_stripes", "working_dir": str(tmp_path / "alone")})
    alone = report(tmp_path / "alone", "triangle_stripes")
    assert alone["concepts"] == ours["concepts"] and alone["run"] == ours["run"]


def test_a_rerun_with_other_flags_leaves_no_stale_concept_folder(demo_run, tmp_path):
    kwargs, _ = demo_run
    wd = tmp_path
    run(**{**kwargs, "working_dir": str(wd), "n_clusters": 6})
    run(**{**kwargs, "working_dir": str(wd), "n_clusters": 12})
    data = report(wd, "disc_square")
    kept = {f"block3_{c['concept']}" for c in data["concepts"] if c["significant"]}
    assert {p.name for p in (wd / "classes" / "disc_square" / "concepts").iterdir()} == kept | {"images"}
    assert not list(wd.rglob("*.part"))


def test_several_classes_in_one_command_a_missing_one_fails_alone(demo_world, prefect_server, tmp_path):
    argv = ["--target_class", "disc_square", "no_such_class", "triangle_stripes", "--source_dir", str(demo_world),
            "--working_dir", str(tmp_path), "--model_to_run", "ace_demo_cnn", "--labels_path",
            str(demo_world / "labels.txt"), "--feature_names", "block3", "--num_random_exp", "4", "--max_imgs", "8",
            "--min_imgs", "4", "--n_clusters", "6"]
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), *argv], capture_output=True, text=True,
                         env=prefect_server, timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith("ace: error: class 'no_such_class': --target_class")
    assert "ACE classes:" not in out.stderr  # the table is shown once, on stdout (the Prefect logs keep it too)
    table = out.stdout[out.stdout.index("class "):].splitlines()
    assert [line.split()[:2] for line in table[1:4]] == [["disc_square", "done"], ["no_such_class", "failed"],
                                                         ["triangle_stripes", "done"]]
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("ace_results.json"))
    assert found == ["classes/disc_square/results_summaries/ace_results.json",
                     "classes/triangle_stripes/results_summaries/ace_results.json"]
    assert report(tmp_path, "disc_square")["run"]["target_class"] == "disc_square"


def test_class_names_that_differ_only_in_punctuation_get_a_folder_each(demo_world, prefect_harness, tmp_path):
    """``disc_square`` and ``disc square`` (both the label disc_square) in one run: two reports, each
    naming its class; the second's folder is its file-safe name with a short hash of the name."""
    from ace.flows.classes import ace_classes_flow
    from ace.storage.layout import class_folder

    src = tmp_path / "src"
    src.mkdir()
    for sub in demo_world.iterdir():
        (src / sub.name).symlink_to(sub)
    (src / "disc square").symlink_to(demo_world / "disc_square")
    wd = tmp_path / "wd"
    results = ace_classes_flow(target_classes=["disc_square", "disc square"], source_dir=str(src), working_dir=str(wd),
                               model_to_run="ace_demo_cnn", labels_path=str(demo_world / "labels.txt"),
                               feature_names=["block3"], num_random_exp=3, max_imgs=8, min_imgs=4, n_clusters=6,
                               n_jobs=2)
    assert [r.status for r in results] == ["done", "done"]
    assert class_folder("disc_square") == "disc_square" and class_folder("disc square").startswith("disc_square-")
    assert len({r.report for r in results}) == 2
    for r in results:
        assert report(wd, class_folder(r.target_class))["run"]["target_class"] == r.target_class
        assert Path(r.report).parent.parent.name == class_folder(r.target_class)
    rows = (wd / "results_summaries" / "classes.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[4] for line in rows) == sorted(r.report for r in results)
    assert {p.name for p in (wd / "classes").iterdir()} == {class_folder("disc_square"), class_folder("disc square")}


def test_every_class_runs_its_tasks_on_the_runner_the_classes_run_was_given(demo_world, prefect_harness, monkeypatch,
                                                                           tmp_path):
    """``--num_parallel_runs`` / ``--dask_address`` with several classes: each class's subflow submits
    its tasks to a copy of the parent's task runner, not to the one ``ace_flow``'s decorator names."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    from ace.flows.classes import ace_classes_flow
    from ace.flows.steps import PrefectSteps

    seen = []
    original = PrefectSteps.map

    def spy(self, *args, **kwargs):
        ctx = FlowRunContext.get()
        seen.append((ctx.flow_run.name, type(ctx.task_runner).__name__, ctx.task_runner._max_workers))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PrefectSteps, "map", spy)
    results = ace_classes_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=3))(
        target_classes=["disc_square", "triangle_stripes"], source_dir=str(demo_world), working_dir=str(tmp_path),
        model_to_run="ace_demo_cnn", labels_path=str(demo_world / "labels.txt"), feature_names=["block3"],
        num_random_exp=3, max_imgs=8, min_imgs=4, n_clusters=6, n_jobs=1)
    assert [r.status for r in results] == ["done", "done"]
    assert seen == [("ace-disc_square", "ThreadPoolTaskRunner", 3), ("ace-triangle_stripes", "ThreadPoolTaskRunner", 3)]
