"""Numerical precision of the forward passes: ``--precision {auto,fp32,bf16,fp16}``.

``auto`` is bf16 on CPUs with native bfloat16 instructions (AVX512-BF16 or AMX) and on CUDA GPUs
that support it, fp32 elsewhere. Reduced precision runs the model under ``torch.autocast``; its
activations are stored as computed (bf16 or fp16, half the bytes of fp32). The chosen precision is
part of the :class:`~ace.tasks.models.ModelSpec`, so activations of different precisions never mix
in the cache. Class-logit gradients are always computed in fp32 (a small share of the run).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ace.storage.tables import as_bf16_bits
from ace.tasks.errors import ACEInputError
from ace.tasks.params import choices

PRECISIONS = choices("precision")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bfloat16 dot-product instructions (Linux: /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) for ``--precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ACEInputError(f"--precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            return "fp16"
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` for bf16 / fp16, nothing for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def to_storage(act: torch.Tensor) -> np.ndarray:
    """An activation tensor as the array a table stores: bf16 as its bit patterns, fp16 as float16,
    anything else as float32."""
    act = act.detach().cpu().contiguous()
    if act.dtype == torch.bfloat16:
        return as_bf16_bits(act.view(torch.int16).numpy().view(np.uint16))
    if act.dtype == torch.float16:
        return act.numpy()
    return act.float().numpy()
