"""Threads for the CPU work that releases the GIL (image decoding, SLIC, NumPy, zlib)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], n_jobs: int) -> Iterator[R]:
    """``map(fn, items)`` on ``n_jobs`` threads, in order, at most ``2 * n_jobs`` results ahead of
    the consumer. SLIC and NumPy release the GIL, so threads use every core without the start-up
    and pickling of worker processes."""
    if n_jobs == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    items = iter(items)
    with ThreadPoolExecutor(n_jobs) as pool:
        pending = deque(pool.submit(fn, x) for _, x in zip(range(2 * n_jobs), items))  # range first: no extra item
        while pending:
            yield pending.popleft().result()
            for x in items:
                pending.append(pool.submit(fn, x))
                break
