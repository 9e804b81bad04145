"""How a step runs and is cached: Prefect cache keys built from content keys (never from arrays or
tensors), the lock every step's body runs under, and the code versions of the steps.

Every cached ACE step takes an ``out`` parameter: the content-addressed path (or paths) its
result is written to (see :mod:`ace.storage.layout`), keyed on its inputs and on its step's code
version (:data:`ace.tasks.versions.STEP_VERSIONS`). The Prefect cache key is a hash of the task's
name, code version and source and of its (small) parameters. A cache record is only trusted while
``out`` exists: :func:`fresh` gives the flow a copy of the task that refreshes its cache when a file
behind it was deleted, so a run never returns a dangling path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import logging
from pathlib import Path
from typing import Any, Callable

from ace.storage.atomic import file_lock
from ace.storage.keys import content_key
from ace.tasks.versions import STEP_VERSIONS

CACHE_VERSION = "2"
# parameters that change how fast a task runs, never what it writes
NOT_KEYED = frozenset({"n_jobs", "batch_size", "label"})


@functools.lru_cache(maxsize=None)
def _source_digest(fn) -> str:
    """A digest of ``fn``'s source (read once per process: a module's code does not change once imported)."""
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
    return content_key(CACHE_VERSION, task.name, STEP_VERSIONS.get(task.name), _source_digest(task.fn), keyed)


def _outs(out) -> list[str]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def outputs_exist(out: str | list[str] | tuple[str, ...]) -> bool:
    return all(Path(o).exists() for o in _outs(out))


def fresh(task_obj, out):
    """``task_obj`` itself when its output ``out`` exists, else a copy that ignores (and rewrites)
    its cache record."""
    return task_obj if outputs_exist(out) else task_obj.with_options(refresh_cache=True)


def map_fresh(task_obj, outs: list, **kwargs) -> list:
    """``task_obj.map`` where each mapped run is checked on its own output: runs whose file exists
    use their cache record, the others refresh it (so after a crash only unfinished work reruns).

    ``kwargs`` are lists (one value per run, like ``outs``, passed as ``out``) or ``unmapped(...)``.
    Returns the futures in the order of ``outs``."""
    from prefect import unmapped

    groups: dict[bool, list[int]] = {}
    for i, o in enumerate(outs):
        groups.setdefault(outputs_exist(o), []).append(i)
    futures: list = [None] * len(outs)
    for exists, idx in groups.items():
        args = {k: v if isinstance(v, unmapped) else [v[i] for i in idx] for k, v in kwargs.items()}
        mapped = (task_obj if exists else task_obj.with_options(refresh_cache=True)).map(
            **args, out=[outs[i] for i in idx])
        for i, f in zip(idx, mapped):
            futures[i] = f
    return futures


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


def _log(message: str) -> None:
    try:
        from prefect import get_run_logger

        get_run_logger().info(message)
    except Exception:  # outside a run
        logging.getLogger("ace").info(message)


def returns_out(out):
    """The default ``load`` of a step: its output path(s)."""
    return out


def run_step(fn: Callable, load: Callable, args: tuple, kwargs: dict, params: list[str] | None = None) -> Any:
    """Run a step's function under a lock on its ``out`` shared by every process on the working
    directory: when two runs want the same result, one computes it and the other waits and then
    reads it with ``load(out)`` (the step's return value rebuilt from its files). Output that already
    exists (a run killed after writing it, before Prefect recorded it) is read the same way. Freed
    memory goes back to the OS after each run that did work. ``params``: the names of ``fn``'s
    parameters (by default from its signature)."""
    params = params or list(inspect.signature(fn).parameters)
    out = dict(zip(params, args), **kwargs).get("out")
    try:
        if out is None:  # nothing written: nothing to share
            return fn(*args, **kwargs)
        first = Path(_outs(out)[0])
        with file_lock(first.with_name(f".{first.name}.lock")):
            if outputs_exist(out):
                _log(f"{first.name} is already written (by another run): reading it")
                return load(out)
            return fn(*args, **kwargs)
    finally:
        release_memory()
