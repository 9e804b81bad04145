"""Prefect cache keys built from content keys, never from arrays or tensors.

Every cached ACE task takes an ``out`` parameter: the content-addressed path (or paths) its
result is written to (see :mod:`ace.storage.layout`). The cache key is a hash of the task's name
and source and of its (small) parameters. A cache record is only trusted while ``out`` exists:
:func:`fresh` gives the flow a copy of the task that refreshes its cache when a file behind it was
deleted, so a run never returns a dangling path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
from pathlib import Path
from typing import Any

from prefect import task

from ace.storage.keys import content_key

CACHE_VERSION = "1"
# parameters that change how fast a task runs, never what it writes
NOT_KEYED = frozenset({"n_jobs", "batch_size"})


def _source_digest(fn) -> str:
    fn = inspect.unwrap(fn)
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = getattr(fn, "__qualname__", repr(fn))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def params_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn``: the task's name and source and its small parameters (content keys, paths)."""
    task = context.task
    keyed = {k: v for k, v in parameters.items() if k not in NOT_KEYED}
    return content_key(CACHE_VERSION, task.name, _source_digest(task.fn), keyed)


def outputs_exist(out: str | list[str] | tuple[str, ...]) -> bool:
    outs = out if isinstance(out, (list, tuple)) else [out]
    return all(Path(o).exists() for o in outs)


def fresh(task_obj, out):
    """``task_obj`` itself when its output ``out`` exists, else a copy that ignores (and rewrites)
    its cache record."""
    return task_obj if outputs_exist(out) else task_obj.with_options(refresh_cache=True)


def retry_unless_input_error(task, task_run, state) -> bool:
    """Retry failed steps, except on bad input (retrying cannot fix a missing folder)."""
    from ace.tasks.errors import ACEInputError

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # pragma: no cover - a state without a readable result
        return True
    return not isinstance(exc, ACEInputError)


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise: a gradient pass through
    EfficientNet left ~0.8 GB of RSS behind)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


CACHED = dict(cache_key_fn=params_cache_key, persist_result=True, retries=1, retry_delay_seconds=2,
              retry_condition_fn=retry_unless_input_error)


def ace_task(name: str, **options):
    """``@task(name=..., **CACHED)`` around a step, handing freed memory back to the OS after each run
    that did work (cached runs never enter the body)."""
    options = {**CACHED, **options}

    def decorate(fn):
        @functools.wraps(fn)
        def body(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            finally:
                release_memory()

        return task(name=name, **options)(body)

    return decorate

