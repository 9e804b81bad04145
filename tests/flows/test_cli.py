import subprocess
import sys
from pathlib import Path

import pytest

from ace.flows.cli import build_parser, run_kwargs

ROOT = Path(__file__).resolve().parents[2]
SEED = ("--num_parallel_runs 0 --target_class zebra --source_dir SOURCE_DIR --working_dir SAVE_DIR "
        "--model_to_run resnet18 --labels_path imagenet_class_index.json --feature_names layer3 "
        "--num_random_exp 20 --max_imgs 50 --min_imgs 30").split()


def test_the_seed_command_parses_flag_for_flag():
    args = build_parser().parse_args(["run", *SEED])
    kw = run_kwargs(args)
    assert kw["target_class"] == "zebra" and kw["model_to_run"] == "resnet18"
    assert kw["feature_names"] == ["layer3"] and kw["num_random_exp"] == 20
    assert kw["max_imgs"] == 50 and kw["min_imgs"] == 30 and args.num_parallel_runs == 0
    assert kw["source_dir"].endswith("SOURCE_DIR") and Path(kw["working_dir"]).is_absolute()
    assert kw["labels_path"] == "imagenet_class_index.json" and kw["stat_testing_filter"] is True
    # what this version adds, at its defaults
    assert (kw["cav_solver"], kw["precision"], kw["embedding"], kw["layout"], kw["evaluate"]) == \
        ("exact", "auto", "crop", "auto", False)
    kw = run_kwargs(build_parser().parse_args(["run", *SEED, "--layout", "tokens", "--evaluate", "--cav-solver", "sgd"]))
    assert (kw["layout"], kw["evaluate"], kw["cav_solver"]) == ("tokens", True, "sgd")


def test_dashes_old_names_and_several_layers():
    argv = ["run", "--num-parallel-workers", "3", "--target-class", "zebra", "--source-dir", "s", "--working-dir", "w",
            "--feature-names", "layer2", "layer3,layer4", "--stat_testing_filter", "false", "--model-path", "m.pth"]
    args = build_parser().parse_args(argv)
    kw = run_kwargs(args)
    assert args.num_parallel_runs == 3
    assert kw["feature_names"] == ["layer2", "layer3", "layer4"]
    assert kw["stat_testing_filter"] is False and kw["model_path"] == "m.pth"
    assert build_parser().parse_args(["run", "--num_parallel_workers", "2", *SEED[2:]]).num_parallel_runs == 2


def test_required_flags_are_named():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--target_class", "zebra"])


def test_ace_run_py_is_the_same_cli():
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--num_parallel_runs", "--num_parallel_workers", "--target_class", "--source_dir", "--working_dir",
                 "--model_to_run", "--model_path", "--labels_path", "--feature_names", "--num_random_exp",
                 "--max_imgs", "--min_imgs", "--stat_testing_filter"):
        assert flag in out.stdout


def test_bad_input_exits_2_with_a_message(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), "--target_class", "zebra", "--source_dir",
                          str(tmp_path / "missing"), "--working_dir", str(tmp_path / "w"), "--model_to_run",
                          "ace_demo_cnn", "--labels_path", str(tmp_path / "l.txt"), "--feature_names", "block3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "ace: error: --labels_path" in out.stderr


def test_cores_are_shared_among_parallel_workers(monkeypatch):
    import os

    from ace.flows.cli import n_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    parse = build_parser().parse_args
    assert n_jobs(parse(["run", *SEED])) == 8
    assert n_jobs(parse(["run", *SEED, "--num_parallel_runs", "4"])) == 2
    assert n_jobs(parse(["run", *SEED, "--num_parallel_runs", "16"])) == 1
    assert n_jobs(parse(["run", *SEED, "--n_jobs", "3"])) == 3


def test_a_successful_and_a_cached_run_print_no_traceback(demo_world, tmp_path):
    """With the temporary server (no PREFECT_API_URL), as a first-time user runs it."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    argv = [sys.executable, str(ROOT / "ace_run.py"), "--target_class", "disc_square", "--source_dir", str(demo_world),
            "--working_dir", str(tmp_path / "wd"), "--model_to_run", "ace_demo_cnn", "--labels_path",
            str(demo_world / "labels.txt"), "--feature_names", "block3", "--num_random_exp", "3", "--max_imgs", "6",
            "--min_imgs", "3", "--n_clusters", "4"]
    for _ in range(2):
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr[-3000:]
        assert out.stdout.splitlines()[0] == f"Report: {tmp_path / 'wd/classes/disc_square/results_summaries/ace_results.txt'}"
        # the command's own server has no UI and is gone at exit: Prefect's link to it is not shown
        assert "Beginning flow run" in out.stderr and "View at" not in out.stderr, out.stderr[-3000:]
    assert "Cached" in out.stderr
