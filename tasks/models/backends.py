"""Inference backends for the activation passes: PyTorch eager, or the model cut at the layers and
compiled by OpenVINO.

``--backend openvino`` (and ``auto`` on a CPU where the ``openvino`` package is installed) cuts the
model after the requested layers (torchvision's ``create_feature_extractor``: any fx-traceable
model, several layers at once), converts it once with ``openvino.convert_model`` and keeps the
converted model in the working directory (``cache/compiled/<key>.xml``; a second run reads it, no
conversion), compiled with OpenVINO's own blob cache beside it. Batches are split over as many
asynchronous infer requests as OpenVINO finds optimal (``PERFORMANCE_HINT: THROUGHPUT``); bf16
runs with ``INFERENCE_PRECISION_HINT: bf16``. A model that does not cut or convert falls back to
PyTorch with one warning saying why. Gradients (TCAV) always stay in PyTorch, fp32.

The backend is part of :class:`ace.tasks.models.loader.ModelSpec`, hence of the activations'
content keys: activations of two backends are never mixed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

_COMPILED: dict[tuple, object] = {}
_LOCK = threading.Lock()


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
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
    """The model up to ``layers``, returning their outputs as a tuple (what the converter wants)."""

    def __init__(self, model: torch.nn.Module, layers: list[str]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.layers = list(layers)
        self.body = create_feature_extractor(model, return_nodes={l: f"out{i}" for i, l in enumerate(layers)})

    def forward(self, x):
        out = self.body(x)
        return tuple(out[f"out{i}"] for i in range(len(self.layers)))


def compiled_key(spec, layers: list[str]) -> str:
    """Content key of a converted model: the weights' fingerprint, the layers, the input size, OpenVINO's version."""
    import openvino

    text = "|".join([spec.name, spec.key, ",".join(layers), str(spec.input_size), openvino.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def convert(model: torch.nn.Module, spec, layers: list[str], folder: Path) -> Path:
    """Convert ``model`` cut at ``layers`` to ``folder/<key>.xml`` unless it is there; returns the path."""
    import openvino

    from ace.storage.atomic import file_lock

    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{compiled_key(spec, layers)}.xml"
    with file_lock(str(xml) + ".lock"):
        if xml.is_file():
            return xml
        example = torch.zeros(1, 3, spec.input_size, spec.input_size)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing's deprecation and train/eval notes: not the user's concern
            ov_model = openvino.convert_model(_Cut(model, layers).eval(), example_input=example,
                                              input=[openvino.PartialShape([-1, 3, spec.input_size, spec.input_size])])
        tmp = folder / f".{xml.stem}.{os.getpid()}.xml"
        openvino.save_model(ov_model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    return xml


class OpenVINOActivations:
    """``__call__(x)``: the activations of ``layers`` for a normalised float32 (N, 3, H, W) batch, as
    float32 torch tensors (``bf16`` precision: as bfloat16, as PyTorch's autocast gives them)."""

    def __init__(self, model: torch.nn.Module, spec, layers: list[str], folder: str) -> None:
        import openvino

        self.layers, self.precision = list(layers), spec.precision
        key = (compiled_key(spec, self.layers), spec.precision, folder)
        with _LOCK:
            if key not in _COMPILED:
                xml = convert(model, spec, self.layers, Path(folder))
                core = openvino.Core()
                config = {"PERFORMANCE_HINT": "THROUGHPUT", "CACHE_DIR": str(Path(folder) / "blobs"),
                          "INFERENCE_PRECISION_HINT": "bf16" if spec.precision == "bf16" else "f32"}
                compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
                _COMPILED[key] = compiled
        self.compiled = _COMPILED[key]
        self.requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        import openvino

        data = np.ascontiguousarray(x.detach().float().contiguous().cpu().numpy())
        chunks = np.array_split(data, min(self.requests, len(data)))
        results: list = [None] * len(chunks)
        queue = openvino.AsyncInferQueue(self.compiled, len(chunks))

        def done(request, i):
            results[i] = [np.array(request.get_output_tensor(k).data) for k in range(len(self.layers))]

        queue.set_callback(done)
        for i, chunk in enumerate(chunks):
            queue.start_async({0: chunk}, i)
        queue.wait_all()
        out = {}
        for k, layer in enumerate(self.layers):
            t = torch.from_numpy(np.concatenate([r[k] for r in results]))
            out[layer] = t.to(torch.bfloat16) if self.precision == "bf16" else t
        return out


def activation_runner(model: torch.nn.Module, spec, layers: list[str], folder: str | None):
    """What computes the activations of ``layers``: OpenVINO where ``spec.backend`` says so (and the
    model converts), else ``None`` (the caller uses PyTorch's hooks). A model that fails to convert
    gives one warning and ``None``."""
    if getattr(spec, "backend", "torch") != "openvino" or folder is None:
        return None
    try:
        return OpenVINOActivations(model, spec, layers, folder)
    except Exception as e:  # a model fx cannot trace or OpenVINO cannot convert: PyTorch does the passes
        warnings.warn(f"--backend openvino: {spec.name} cut at {', '.join(layers)} did not convert "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); using PyTorch",
                      stacklevel=2)
        return None
