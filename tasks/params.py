"""Every parameter of an ACE run, defined once.

Each :class:`Param` holds a parameter's name, type, default, choices, help and check. From
:data:`PARAMS` come: the ``ace run`` command line (:mod:`ace.flows.cli`), the signatures of the
``ace`` and ``ace-classes`` flows (and so the deployments' parameter schema), the checks every run
starts with (:func:`check_parameters`), the :class:`ace.ACE` estimator's keyword arguments and the
flag reference in ``docs/flags.md`` (:func:`flag_table`). Adding a parameter is one entry here
plus its use.

Nothing here imports torch or Prefect: the command line checks its input before either loads.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ace.tasks.errors import ACEInputError

REQUIRED = object()  # the default of a parameter that has none
MIN_INPUT_SIZE = 32


@dataclass(frozen=True)
class Param:
    """One parameter of a run.

    Attributes:
        name: the flow parameter's name and the flag (``--name``; ``--na-me`` works too).
        type: its Python type, as the flows' signatures (and Prefect's schema) declare it.
        default: the default, or :data:`REQUIRED`.
        help: one line for ``--help``, the flow's docstring and ``docs/flags.md``.
        choices: the allowed values, where they are a fixed list.
        check: ``check(value)`` raises :class:`ACEInputError` naming the flag and what to do.
        aliases: more flag names (the original scripts' spellings).
        many: the command line takes one or more values (``nargs="+"``).
        flow: a parameter of the flows (else of the command line only).
        section: where ``docs/flags.md`` lists it.
    """

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple | None = None
    check: Callable[[Any], None] | None = None
    aliases: tuple[str, ...] = ()
    many: bool = False
    flow: bool = True
    section: str = "ACE"

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _whole(name: str, low: int, why: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ACEInputError(f"--{name} must be a whole number, got {value!r}")
        if value < low:
            raise ACEInputError(f"--{name} {value}: {why}")
    return check


def _optional(check: Callable[[Any], None]) -> Callable[[Any], None]:
    return lambda value: None if value is None else check(value)


def _check_seed(value: Any) -> None:
    _whole("seed", 0, "seeds are whole numbers from 0 to 2**32 - 1")(value)
    if value >= 2**32:
        raise ACEInputError(f"--seed {value}: seeds are whole numbers from 0 to 2**32 - 1")


def _check_alpha(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ACEInputError(f"--alpha {value!r}: the significance level is a probability in (0, 1] (default 0.01)")


def _check_classes(value: Any) -> None:
    classes = [value] if isinstance(value, str) else list(value or [])
    if not classes or any(not str(c).strip() for c in classes):
        raise ACEInputError("--target_class is empty: name the class to explain, as in the labels file")


def _check_layers(value: Any) -> None:
    parse_layers(value)


def _not_template(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if "{{" in str(value):
            raise ACEInputError(f"--{name} {value!r} is a template nobody filled in: set the environment variable it "
                                "names before `prefect deploy` (see deployments/prefect.yaml)")
    return check


PARAMS: tuple[Param, ...] = (
    Param("target_class", str, REQUIRED, "class(es) to explain, as named in the labels file; several run as one "
          "parent flow, one subflow each", check=_check_classes, aliases=("target_classes",), many=True,
          section="Inputs"),
    Param("source_dir", str, REQUIRED, "folder with <target_class>/, random_discovery/, random500_<i>/",
          check=_not_template("source_dir"), section="Inputs"),
    Param("working_dir", str, REQUIRED, "where caches and results go (created if missing; nothing there is deleted)",
          check=_not_template("working_dir"), section="Inputs"),
    Param("model_to_run", str, "googlenet", "torchvision model name, efficientnet_lite0, ace_demo_cnn, "
          "hub:owner/repo:entry or a model file", section="Model"),
    Param("model_path", Optional[str], None, "weights: a state dict, a whole saved module or a TorchScript file "
          "(default: the torch hub cache)", section="Model"),
    Param("labels_path", Optional[str], None, "imagenet_class_index.json or one label a line (default: the "
          "packaged ImageNet index)", section="Model"),
    Param("feature_names", list[str], ("mixed4c",), "layer names from model.named_modules(), space or comma "
          "separated", check=_check_layers, aliases=("bottlenecks",), many=True, section="Model"),
    Param("num_random_exp", int, 20, "number of random sets random500_0..N-1",
          check=_whole("num_random_exp", 2, "the t-test needs at least 2 random sets (the original uses 20)")),
    Param("max_imgs", int, 50, "discovery images, and examples kept per concept",
          check=_whole("max_imgs", 2, "ACE needs at least 2 discovery images per class (the original uses 50)")),
    Param("min_imgs", int, 30, "a cluster needs more members than this to be a concept",
          check=_whole("min_imgs", 0, "a cluster's minimum size cannot be negative (the original uses 30)")),
    Param("superpixel_method", str, "slic", "how images are cut into superpixels (three resolutions each)",
          choices=("slic", "watershed", "quickshift", "felzenszwalb")),
    Param("clustering_method", str, "KM", "KMeans, affinity propagation, mean shift, spectral clustering or DBSCAN",
          choices=("KM", "AP", "MS", "SC", "DB")),
    Param("n_clusters", int, 25, "clusters per layer (KM, SC)",
          check=_whole("n_clusters", 1, "there must be at least 1 cluster (the original uses 25)")),
    Param("consensus", int, 50, "KMeans runs combined into one consensus clustering, so the concepts do not "
          "depend on the seed (KM); 1 = the original's single KMeans",
          check=_whole("consensus", 1, "at least one KMeans run is needed (1 = the original's single clustering)")),
    Param("fill", str, "mean", "patch fill: the model's mean (neutral after normalisation) or the original's "
          "117/255", choices=("mean", "parity")),
    Param("alpha", float, 0.01, "p-value threshold of the t-test", check=_check_alpha, section="Statistics"),
    Param("correction", str, "none", "multiple-comparison correction across all concepts",
          choices=("none", "bonferroni", "holm", "fdr_bh"), section="Statistics"),
    Param("stat_testing_filter", bool, True, "drop concepts not significantly different from random",
          section="Statistics"),
    Param("input_size", Optional[int], None, "override the model's input size (pixels)",
          check=_optional(_whole("input_size", MIN_INPUT_SIZE,
                                 f"images smaller than {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels cannot be segmented "
                                 "into superpixels (leave it out to use the model's own size)")), section="Model"),
    Param("batch_size", int, 32, "images per forward pass",
          check=_whole("batch_size", 1, "a batch holds at least 1 image (default 32)"), section="Speed"),
    Param("seed", int, 0, "seed of KMeans, the CAVs' train/test splits and SGD", check=_check_seed),
    Param("n_jobs", Optional[int], None, "cores each task may use for segmentation and CAV training (default: all "
          "cores, shared among --num_parallel_runs workers)",
          check=_optional(_whole("n_jobs", 1, "each task needs at least 1 core (leave it out to use them all)")),
          section="Speed"),
    Param("cav_solver", str, "exact", "exact: the optimum of the original's CAV objective (hinge loss, L2 alpha "
          "0.01), solved in the Gram space; sgd: the original's SGDClassifier (parity)", choices=("sgd", "exact")),
    Param("precision", str, "auto", "forward passes that embed images: auto = bf16 on CPUs with native bf16 and on "
          "CUDA GPUs that support it, else fp32", choices=("auto", "fp32", "bf16", "fp16"), section="Speed"),
    Param("backend", str, "auto", "what runs the activation passes: openvino (the model cut at the layers, "
          "converted once, compiled), torch (eager), auto = openvino on a CPU where it is installed",
          choices=("auto", "torch", "openvino"), section="Speed"),
    Param("embedding", str, "crop", "crop: ACE's (each superpixel resized to the input, one pass each); pooled: one "
          "pass per image, superpixels pooled from its feature map (fast)", choices=("crop", "pooled")),
    Param("test", str, "two-sided", "two-sided (the original): concepts that raise or lower the class; greater: "
          "only those that raise it", choices=("two-sided", "greater"), section="Statistics"),
    Param("layout", str, "auto", "where a layer's channels are: auto finds it from the model (NCHW for CNNs, "
          "channels last for Swin, tokens for ViT)", choices=("auto", "nchw", "nhwc", "tokens"), section="Model"),
    Param("evaluate", bool, False, "also compute the paper's SSC/SDC curves of the top concepts on the scoring images"),
    Param("num_parallel_runs", int, 0, "workers for the per-random-set fan-out; 0 runs it serially",
          check=_whole("num_parallel_runs", 0, "0 runs the fan-out serially; N > 0 on N threads"),
          aliases=("num_parallel_workers",), flow=False, section="Speed"),
    Param("dask_address", Optional[str], None, "run mapped tasks on this Dask scheduler (needs the 'dask' extra)",
          flow=False, section="Speed"),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
FLOW_PARAMS: tuple[Param, ...] = tuple(p for p in PARAMS if p.flow)


def default(name: str) -> Any:
    """The default of parameter ``name`` (lists for list parameters)."""
    value = BY_NAME[name].default
    if value is REQUIRED:
        raise KeyError(f"{name} has no default")
    return list(value) if isinstance(value, tuple) and BY_NAME[name].many else value


def choices(name: str) -> tuple:
    return BY_NAME[name].choices or ()


def parse_layers(feature_names: Any) -> list[str]:
    """Layer names from a string or list, split at commas (``--feature_names a,b c``)."""
    names = [feature_names] if isinstance(feature_names, str) else list(feature_names or [])
    layers = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if not layers:
        raise ACEInputError("--feature_names is empty: name at least one layer of the model, as in "
                            "model.named_modules() (e.g. layer3 for a ResNet)")
    return layers


def check_working_dir(working_dir: str | Path) -> Path:
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


def check_parameters(**values: Any) -> int:
    """Check the given parameters of a run (raises :class:`ACEInputError`; names not in
    :data:`PARAMS` are ignored, ``target_classes`` is checked as ``target_class``); returns
    ``n_jobs`` with its default (all cores) filled in. The working directory is created if missing."""
    if "target_classes" in values:
        values = {**values, "target_class": values["target_classes"]}
    for p in PARAMS:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.check is not None:
            p.check(value)
        if p.choices is not None and value not in p.choices:
            raise ACEInputError(f"--{p.name} {value!r} is not one of: {', '.join(p.choices)}")
    if values.get("working_dir"):
        check_working_dir(values["working_dir"])
    return values.get("n_jobs") or (os.cpu_count() or 1)


def _type_name(t: Any) -> str:
    text = getattr(t, "__name__", None) if not hasattr(t, "__args__") else None
    return text or str(t).replace("typing.", "").replace("Optional[", "").rstrip("]").replace("NoneType", "")


def flag_table() -> str:
    """The flag reference of ``docs/flags.md`` (Markdown), made from :data:`PARAMS`."""
    lines = []
    for section in dict.fromkeys(p.section for p in PARAMS):
        lines += [f"### {section}", "", "| flag | default | values | what it does |", "| --- | --- | --- | --- |"]
        for p in (p for p in PARAMS if p.section == section):
            names = ", ".join(f"`--{n}`" for n in (p.name, *p.aliases))
            if p.required:
                dflt = "required"
            elif p.default is None:
                dflt = "-"
            elif isinstance(p.default, tuple):
                dflt = " ".join(f"`{v}`" for v in p.default)
            else:
                dflt = f"`{str(p.default).lower() if isinstance(p.default, bool) else p.default}`"
            values = (", ".join(f"`{c}`" for c in p.choices) if p.choices else
                      "true/false" if p.type is bool else
                      f"one or more {_type_name(p.type).replace('list[', '').rstrip(']')}" if p.many else
                      _type_name(p.type))
            scope = "" if p.flow else " (command line only)"
            text = p.help.replace("<", "&lt;").replace(">", "&gt;")
            lines.append(f"| {names} | {dflt} | {values} | {text}{scope} |")
        lines.append("")
    return "\n".join(lines)
