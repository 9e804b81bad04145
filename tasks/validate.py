"""Checks of a run's parameters, the same for the command line and for flow (deployment) runs.

Each failure is an :class:`ACEInputError` naming the flag and what to do; nothing here touches
Prefect, so the command line checks before a server starts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ace.tasks.errors import ACEInputError

SUPERPIXEL_METHODS = ("slic", "watershed", "quickshift", "felzenszwalb")
CLUSTERING_METHODS = ("KM", "AP", "MS", "SC", "DB")
FILLS = ("mean", "parity")
CORRECTIONS = ("none", "bonferroni", "holm", "fdr_bh")
CAV_SOLVERS = ("sgd", "exact")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EMBEDDINGS = ("crop", "pooled")
TESTS = ("two-sided", "greater")
LAYOUTS = ("auto", "nchw", "nhwc", "tokens")  # ace.tasks.layouts.LAYOUTS (not imported: it needs torch)
MIN_INPUT_SIZE = 32


def _int(name: str, value: Any, low: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ACEInputError(f"--{name} must be a whole number, got {value!r}")
    if value < low:
        raise ACEInputError(f"--{name} {value}: {why}")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ACEInputError(f"--{name} {value!r} is not one of: {', '.join(choices)}")


def check_working_dir(working_dir: str) -> Path:
    """The working directory exists (or can be made) and is a writable folder."""
    wd = Path(working_dir)
    if wd.exists() and not wd.is_dir():
        raise ACEInputError(f"--working_dir {wd} is a file, not a folder: choose a folder (it is created if missing)")
    try:
        wd.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=wd, prefix=".ace-write-test-"):
            pass
    except OSError as e:
        raise ACEInputError(f"--working_dir {wd} is not writable ({e.strerror}): choose a folder you can write to "
                            "or fix its permissions") from e
    return wd


def check_layers(feature_names: Any) -> list[str]:
    names = [feature_names] if isinstance(feature_names, str) else list(feature_names or [])
    layers = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if not layers:
        raise ACEInputError("--feature_names is empty: name at least one layer of the model, as in "
                            "model.named_modules() (e.g. layer3 for a ResNet)")
    return layers


def check_parameters(target_class: str = "", working_dir: str = "", feature_names: Any = ("x",), num_random_exp: int = 20,
                     max_imgs: int = 50, min_imgs: int = 30, superpixel_method: str = "slic",
                     clustering_method: str = "KM", n_clusters: int = 25, fill: str = "mean", alpha: float = 0.01,
                     correction: str = "none", input_size: int | None = None, batch_size: int = 32, seed: int = 0,
                     n_jobs: int | None = None, cav_solver: str = "exact", precision: str = "auto",
                     embedding: str = "crop", test: str = "two-sided", layout: str = "auto", **_ignored: Any) -> int:
    """Check every parameter of a run (raises :class:`ACEInputError`); returns ``n_jobs`` with its
    default (all cores) filled in. The working directory is created if missing."""
    for flag, value in (("source_dir", _ignored.get("source_dir", "")), ("working_dir", working_dir)):
        if "{{" in str(value):
            raise ACEInputError(f"--{flag} {value!r} is a template nobody filled in: set the environment variable it "
                                "names before `prefect deploy` (see deployments/prefect.yaml)")
    classes = [target_class] if isinstance(target_class, str) else list(target_class)
    if not classes or any(not str(c).strip() for c in classes):
        raise ACEInputError("--target_class is empty: name the class to explain, as in the labels file")
    check_layers(feature_names)
    _int("num_random_exp", num_random_exp, 2, "the t-test needs at least 2 random sets (the original uses 20)")
    _int("max_imgs", max_imgs, 2, "ACE needs at least 2 discovery images per class (the original uses 50)")
    _int("min_imgs", min_imgs, 0, "a cluster's minimum size cannot be negative (the original uses 30)")
    _int("n_clusters", n_clusters, 1, "there must be at least 1 cluster (the original uses 25)")
    _int("batch_size", batch_size, 1, "a batch holds at least 1 image (default 32)")
    _int("seed", seed, 0, "seeds are whole numbers from 0 to 2**32 - 1")
    if seed >= 2**32:
        raise ACEInputError(f"--seed {seed}: seeds are whole numbers from 0 to 2**32 - 1")
    if input_size is not None:
        _int("input_size", input_size, MIN_INPUT_SIZE,
             f"images smaller than {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels cannot be segmented into superpixels "
             "(leave it out to use the model's own size)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ACEInputError(f"--alpha {alpha!r}: the significance level is a probability in (0, 1] (default 0.01)")
    _choice("superpixel_method", superpixel_method, SUPERPIXEL_METHODS)
    _choice("clustering_method", clustering_method, CLUSTERING_METHODS)
    _choice("fill", fill, FILLS)
    _choice("correction", correction, CORRECTIONS)
    _choice("cav_solver", cav_solver, CAV_SOLVERS)
    _choice("precision", precision, PRECISIONS)
    _choice("embedding", embedding, EMBEDDINGS)
    _choice("test", test, TESTS)
    _choice("layout", layout, LAYOUTS)
    if n_jobs is not None:
        _int("n_jobs", n_jobs, 1, "each task needs at least 1 core (leave it out to use them all)")
    if working_dir:
        check_working_dir(working_dir)
    return n_jobs or (os.cpu_count() or 1)
