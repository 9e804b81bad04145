"""Every bad input of the README's table: exit code 2, no traceback, the last line ``ace: error: ...``
naming the flag or file. Runs the real command (``python ace_run.py``) against a real Prefect server."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(demo_world, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.pt").write_text("these are not weights\n")
    torch.save(torch.nn.Linear(3, 2).state_dict(), d / "linear.pt")
    (d / "bad.json").write_text('{"0": ["n0", "disc_square"], "1": ')
    (d / "empty.txt").write_text("\n\n")
    (d / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (d / "a_file").write_text("x")
    # a source folder whose class holds a file name that is not UTF-8
    src = d / "src"
    src.mkdir()
    for sub in demo_world.iterdir():
        if sub.name != "disc_square":
            (src / sub.name).symlink_to(sub)
    (src / "disc_square").mkdir()
    for f in sorted((demo_world / "disc_square").iterdir()):
        (src / "disc_square" / f.name).symlink_to(f)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(os.fsencode(src / "disc_square") + b"/\xff\xfe.png")
    return d


def read_only_dir(tmp: Path) -> str:
    if os.geteuid() == 0:  # root writes through permissions: use a file system that refuses everyone
        return "/proc/ace_working_dir"
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "wd")


CASES = {
    "model_path is a text file": ({"model_path": "{d}/notes.pt"}, "--model_path"),
    "model_path of another architecture": ({"model_path": "{d}/linear.pt"}, "--model_path"),
    "model_path missing (demo CNN)": ({"model_path": "{d}/missing.pt"}, "--model_path"),
    "torchvision weights not on this machine": ({"model_to_run": "resnet18", "env": {"TORCH_HOME": "{d}/no_torch_home"}},
                                                "no weights for 'resnet18'"),
    "labels file malformed": ({"labels_path": "{d}/bad.json"}, "--labels_path"),
    "labels file empty": ({"labels_path": "{d}/empty.txt"}, "--labels_path"),
    "labels file binary": ({"labels_path": "{d}/binary.txt"}, "--labels_path"),
    "working dir is a file": ({"working_dir": "{d}/a_file"}, "--working_dir"),
    "working dir read-only": ({"working_dir": "READ_ONLY"}, "--working_dir"),
    "max_imgs 0": ({"max_imgs": "0"}, "--max_imgs"),
    "max_imgs negative": ({"max_imgs": "-5"}, "--max_imgs"),
    "max_imgs 1": ({"max_imgs": "1"}, "--max_imgs"),
    "n_clusters 0": ({"n_clusters": "0"}, "--n_clusters"),
    "n_clusters negative": ({"n_clusters": "-3"}, "--n_clusters"),
    "batch_size 0": ({"batch_size": "0"}, "--batch_size"),
    "input_size 3": ({"input_size": "3"}, "--input_size"),
    "feature_names empty": ({"feature_names": ""}, "--feature_names"),
    "alpha 2": ({"alpha": "2"}, "--alpha"),
    "num_random_exp 1": ({"num_random_exp": "1"}, "--num_random_exp"),
    "image over the decompression-bomb limit": ({"env": {"ACE_MAX_IMAGE_PIXELS": "1000"}}, "decompression bombs"),
    "file name not UTF-8": ({"source_dir": "{d}/src"}, "not valid UTF-8: rename"),
    "class folder missing": ({"target_class": "tri_circle"}, "--target_class"),
    "class not in the labels": ({"target_class": "zebra"}, "--target_class"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, inputs, demo_world, prefect_server, tmp_path):
    change, expect = CASES[case]
    change = dict(change)
    env = {**prefect_server, **{k: v.format(d=inputs) for k, v in change.pop("env", {}).items()}}
    args = {"target_class": "disc_square", "source_dir": str(demo_world), "working_dir": str(tmp_path / "wd"),
            "model_to_run": "ace_demo_cnn", "labels_path": str(demo_world / "labels.txt"), "feature_names": "block3",
            "num_random_exp": "3", "max_imgs": "6", "min_imgs": "3", "n_clusters": "4"}
    for k, v in change.items():
        args[k] = read_only_dir(tmp_path) if v == "READ_ONLY" else v.format(d=inputs)
    argv = [x for k, v in args.items() for x in (f"--{k}", v)]
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), *argv], capture_output=True, text=True,
                         env=env, timeout=300)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines[-1].startswith("ace: error: ") and expect in lines[-1], lines[-1]
    said = lines[-1].removeprefix("ace: error: ")[:60]
    assert [line for line in lines if said in line] == lines[-1:], out.stderr[-3000:]  # said once, not in logs too
