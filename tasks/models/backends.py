"""Inference backends for the activation passes: PyTorch eager, or the model cut at the layers and
compiled by OpenVINO.

``--backend openvino`` (and ``auto`` on a CPU where the ``openvino`` package is installed) cuts the
model after the requested layers (traced up to them with ``torch.jit.trace``, several layers at
once; a trace that keeps a branch on the input's values is refused), converts it once with
``openvino.convert_model`` and keeps the converted model in the working directory
(``cache/compiled/<key>.xml``; a second run reads it, no conversion: the flow's ``compile-model``
step, while the images are scanned and segmented), compiled with OpenVINO's own blob cache beside
it. Batches are split over as many asynchronous infer requests as OpenVINO finds optimal
(``PERFORMANCE_HINT: THROUGHPUT``); bf16 runs with ``INFERENCE_PRECISION_HINT: bf16``. A model
that does not cut or convert falls back to PyTorch with one warning saying why (the reason is kept
in ``<key>.failed``: it is tried once). Gradients (TCAV) always stay in PyTorch, fp32.

The backend is part of :class:`ace.tasks.models.loader.ModelSpec`, hence of the activations'
content keys: activations of two backends are never mixed.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ace.storage.atomic import file_lock
from ace.tasks.models.hooks import capture_layers

_COMPILED: dict[tuple, object] = {}
# images per infer request: as fast as 16 or 32 on 2 cores (376 img/s for EfficientNet-Lite0 in bf16)
# with a quarter of the memory OpenVINO keeps for a request's intermediate tensors (85 MB against 336)
REQUEST_BATCH = 8
_LOCK = threading.Lock()


def import_openvino():
    """``import openvino``, with OpenVINO's telemetry off unless its user opted in.

    OpenVINO's Python package sends usage events to Google Analytics by default, without asking:
    one when it is imported and 21 for a conversion here, each from a process forked off this one
    (a 1 GB process with threads) and waited for up to 3 s, and it writes an id under ``~/intel``.
    That halved the conversion's speed (1.0 -> 0.45 s) and, behind a firewall that drops packets,
    would cost up to 3 s an event. ace makes OpenVINO treat a user who has not decided (no consent
    file) as one who declined, in this process only; a choice made with OpenVINO's ``opt_in_out``
    tool stands. (OpenVINO decides when it is first imported: a program that imports it before ace
    keeps OpenVINO's default.)"""
    _decline_unasked_telemetry()
    import openvino

    return openvino


def _decline_unasked_telemetry() -> None:
    try:
        from openvino_telemetry.utils import opt_in_checker as oc

        check, no_file, declined = oc.OptInChecker.check, oc.ConsentCheckResult.NO_FILE, oc.ConsentCheckResult.DECLINED
    except (ImportError, AttributeError):  # no telemetry package, or one this does not know: nothing to change
        return
    if getattr(check, "ace_declines_unasked", False):
        return

    def checked(self, *args, **kwargs):
        result = check(self, *args, **kwargs)
        return declined if result == no_file else result

    checked.ace_declines_unasked = True
    oc.OptInChecker.check = checked


def openvino_available() -> bool:
    try:
        import_openvino()
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: str) -> str:
    """``torch`` or ``openvino``: ``auto`` is OpenVINO on a CPU where it is installed, PyTorch elsewhere."""
    from ace.tasks.errors import ACEInputError

    if requested == "torch":
        return "torch"
    if requested == "openvino":
        if not openvino_available():
            raise ACEInputError("--backend openvino: the openvino package is not installed "
                                "(pip install 'ace-concepts[openvino]'), or use --backend torch")
        if device != "cpu":
            raise ACEInputError(f"--backend openvino runs on the CPU; this run's device is {device}: use --backend auto")
        return "openvino"
    return "openvino" if device == "cpu" and openvino_available() else "torch"


class _Cut(torch.nn.Module):
    """The model's preprocessing and the model up to ``layers``: uint8 (N, H, W, 3) images in, the
    layers' outputs out as a tuple (what the converter wants). The normalisation runs in the compiled
    graph, so the passes take the images as they are decoded (4x fewer bytes than float32).

    The layers are found by the PyTorch passes' own hooks
    (:func:`ace.tasks.models.hooks.capture_layers`), and the forward pass stops once all are
    captured, so the trace holds nothing after the cut and the rest of the model may be anything.
    Each output is a copy: an in-place operation after the layer (a ReLU after a BatchNorm) does not
    reach it. No torchvision: its import (1.5-2 s of ``torch._dynamo``, holding the GIL) would stall
    the steps that run beside the conversion."""

    def __init__(self, model: torch.nn.Module, layers: list[str], mean, std) -> None:
        super().__init__()
        self.model, self.layers = model, list(layers)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, images):
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        captured = capture_layers(self.model, self.layers, x, torch.clone)
        return tuple(captured[layer] for layer in self.layers)


def compiled_key(spec, layers: list[str]) -> str:
    """Content key of a converted model: the weights' fingerprint, the layers, the input size, OpenVINO's version."""
    openvino = import_openvino()

    text = "|".join([spec.name, spec.key, ",".join(layers), str(spec.input_size), str(spec.mean), str(spec.std),
                     "uint8-nhwc", openvino.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def compiled_path(spec, layers: list[str], folder: str | Path) -> Path:
    """Where :func:`convert` keeps ``spec``'s model cut at ``layers``: ``folder/<key>.xml`` (and ``.bin``)."""
    return Path(folder) / f"{compiled_key(spec, list(layers))}.xml"


def compile_lock(xml: Path) -> Path:
    """The lock a process holds while it compiles the converted model ``xml`` (and OpenVINO writes or
    reads its compiled blob)."""
    return Path(xml).with_suffix(".compile.lock")


class ConversionError(RuntimeError):
    """The model does not cut or convert; the reason is recorded beside the converted model's path
    (``<key>.failed``), so a run tries once and every later pass goes straight to PyTorch."""


def _convert(cut: torch.nn.Module, example: torch.Tensor, inputs: list):
    """``openvino.convert_model`` of ``cut`` traced on ``example``, through OpenVINO's TorchScript
    decoder without the tracer's check (a second trace compared with the first: EfficientNet-Lite0's
    conversion 1.24-1.41 -> 0.81-0.85 CPU s). The same graph as ``convert_model(cut,
    example_input=example)``: same operations, bit-identical outputs.

    A trace keeps the branches its example took. Where the tracer warned that it did (a tensor made a
    Python value: Swin's padding and shift sizes, from the shapes, or a branch on the values), the
    trace is checked against the model on other images (two of noise, another batch size): a model
    whose pass up to the layers changes with the input's values is not converted."""
    openvino = import_openvino()

    try:
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder
    except ImportError:  # pragma: no cover - an OpenVINO without it traces the module itself
        return openvino.convert_model(cut, example_input=example, input=inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        decoder = TorchScriptPythonDecoder(cut, example_input=example, trace_kwargs={"check_trace": False})
    warned = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if warned:
        _check_trace(decoder.pt_module, cut, example, warned[0])
    return openvino.convert_model(decoder, input=inputs)


def _check_trace(traced, cut: torch.nn.Module, example: torch.Tensor, warning: str) -> None:
    probe = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, *example.shape[1:]), dtype=np.uint8))
    with torch.no_grad():
        want, got = cut(probe), traced(probe)
    for w, g in zip(want, got):
        if g.shape != w.shape or float((g - w).abs().max()) > 1e-4 * max(1.0, float(w.abs().max())):
            raise RuntimeError("the pass up to the layers changes with the input's values, and a trace keeps one "
                               f"branch (PyTorch's tracer: {warning.splitlines()[0][:120]})")


def convert(model: torch.nn.Module, spec, layers: list[str], folder: Path) -> Path:
    """Convert ``model`` cut at ``layers`` to ``folder/<key>.xml`` unless it is there; returns the path.
    A model that does not trace or convert raises :class:`ConversionError`, now and on every later call."""
    openvino = import_openvino()

    from ace.storage.atomic import atomic_files, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xml = compiled_path(spec, layers, folder)
    failed = xml.with_suffix(".failed")
    with file_lock(str(xml) + ".lock"):
        if xml.is_file():
            return xml
        if failed.is_file():
            raise ConversionError(failed.read_text().strip())
        size = spec.input_size
        example = torch.zeros(1, size, size, 3, dtype=torch.uint8)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing's notes: not the user's concern (see _convert)
                ov_model = _convert(_Cut(model, layers, spec.mean, spec.std).eval(), example,
                                    [(openvino.PartialShape([-1, size, size, 3]), openvino.Type.u8)])
        except (MemoryError, OSError):
            raise  # the machine's trouble, not the model's: try again next time
        except Exception as e:  # it does not trace (or its trace depends on the values), or OpenVINO cannot convert it
            while e.__cause__ is not None or e.__context__ is not None:  # OpenVINO wraps the trace's own error
                e = e.__cause__ or e.__context__
            first = str(e).splitlines()[0][:200] if str(e) else ""
            reason = f"{type(e).__name__}: {first}"
            write_text(failed, reason + "\n")
            raise ConversionError(reason) from e
        with atomic_files(xml) as tmp:  # the .bin, then the .xml
            openvino.save_model(ov_model, str(tmp), compress_to_fp16=False)
    return xml


_WARNED: set[Path] = set()


def convert_or_fall_back(model: torch.nn.Module, spec, layers: list[str], folder: str | Path) -> Path | None:
    """:func:`convert`; for a model that does not convert, ``None`` and one warning per process and
    model saying why (its passes run in PyTorch)."""
    try:
        return convert(model, spec, list(layers), Path(folder))
    except ConversionError as e:
        path = compiled_path(spec, layers, folder)
        with _LOCK:
            if path in _WARNED:
                return None
            _WARNED.add(path)
        warnings.warn(f"--backend openvino: {spec.name} cut at {', '.join(layers)} does not convert for OpenVINO "
                      f"({e}); the passes run in PyTorch", stacklevel=3)
        return None


class OpenVINOActivations:
    """``__call__(images)``: the activations of ``layers`` for a uint8 (N, H, W, 3) batch of images at
    the model's input size, as float32 torch tensors (``bf16`` precision: as bfloat16, as PyTorch's
    autocast gives them); ``stream(batches)`` the same for many batches, pipelined."""

    def __init__(self, model: torch.nn.Module, spec, layers: list[str], folder: str) -> None:
        openvino = import_openvino()

        self.layers, self.precision = list(layers), spec.precision
        key = (compiled_key(spec, self.layers), spec.precision, folder)
        with _LOCK:
            if key not in _COMPILED:
                xml = convert(model, spec, self.layers, Path(folder))
                core = openvino.Core()
                config = {"PERFORMANCE_HINT": "THROUGHPUT", "CACHE_DIR": str(Path(folder) / "blobs"),
                          "INFERENCE_PRECISION_HINT": "bf16" if spec.precision == "bf16" else "f32"}
                # OpenVINO writes its blob cache with no lock between processes: processes that share the
                # working dir (Dask workers, concurrent runs) compile one at a time, the later ones from the blob
                with file_lock(compile_lock(xml)):
                    compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
                _COMPILED[key] = compiled
        self.compiled = _COMPILED[key]
        self.requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def stream(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        """The activations of every batch, in order, with the requests kept busy: each batch is cut into
        pieces of :data:`REQUEST_BATCH` images, each piece goes to the next free request while earlier
        ones run, and the caller handles a batch's results as soon as all its pieces are back."""
        openvino = import_openvino()

        results: dict[tuple[int, int], list] = {}
        pieces: dict[int, int] = {}
        queue = openvino.AsyncInferQueue(self.compiled, self.requests)

        def done(request, key):
            results[key] = [np.array(request.get_output_tensor(k).data) for k in range(len(self.layers))]

        def finished(i: int) -> bool:
            return i in pieces and all((i, j) in results for j in range(pieces[i]))

        def collect(i: int) -> dict[str, torch.Tensor]:
            parts = [results.pop((i, j)) for j in range(pieces.pop(i))]
            return self._tensors([np.concatenate([p[k] for p in parts]) for k in range(len(self.layers))])

        queue.set_callback(done)
        ready = 0
        for i, batch in enumerate(batches):
            batch = np.ascontiguousarray(batch, dtype=np.uint8)
            starts = range(0, len(batch), REQUEST_BATCH)
            pieces[i] = len(starts)
            for j, start in enumerate(starts):
                queue.start_async({0: batch[start:start + REQUEST_BATCH]}, (i, j))  # waits for a free request
            while finished(ready):
                yield collect(ready)
                ready += 1
        queue.wait_all()
        while finished(ready):
            yield collect(ready)
            ready += 1
        if pieces:  # never a short table: a batch without its results is an error
            raise RuntimeError(f"OpenVINO returned no activations for {len(pieces)} batch(es)")

    def _tensors(self, arrays: list) -> dict[str, torch.Tensor]:
        out = {}
        for layer, a in zip(self.layers, arrays):
            t = torch.from_numpy(a)
            out[layer] = t.to(torch.bfloat16) if self.precision == "bf16" else t
        return out

    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        """The activations of one batch."""
        return next(self.stream([images]))


def activation_runner(model: torch.nn.Module, spec, layers: list[str], folder: str | None):
    """What computes the activations of ``layers``: OpenVINO where ``spec.backend`` says so (the
    model is converted here unless :func:`ace.tasks.models.loader.write_compiled` did it), else ``None`` (the caller uses
    PyTorch's hooks). A model that does not convert gives one warning and ``None``: the backend in
    the content keys is the one asked for, and what it runs is fixed by the model and OpenVINO's
    version, so equal keys still mean equal activations."""
    if getattr(spec, "backend", "torch") != "openvino" or folder is None:
        return None
    if convert_or_fall_back(model, spec, layers, folder) is None:
        return None
    return OpenVINOActivations(model, spec, layers, folder)
