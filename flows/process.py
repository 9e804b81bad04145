"""The ``ace`` process itself: its memory allocator, tuned before any thread starts, and its end (at once,
once its work is done, and never later than a bound). Imports nothing heavy: the command calls it before
it starts its Prefect server."""

from __future__ import annotations

import ctypes
import os
import sys


def tune_malloc(arenas: int = 2, mmap_threshold: int = 4 << 20) -> None:
    """Tune glibc's malloc for a long process that runs class after class.

    * At most ``arenas`` heaps (M_ARENA_MAX). By default every thread that allocates gets its own
      heap, up to 8 per core, and freed memory stays in the heap it came from: the threads of the
      steps (prefetching, segmentation, KMeans runs, PNG encoding) left ~60 MB more behind with
      every class, 1.74 -> 2.23 GB over 8 classes of a sweep; with two heaps RSS stays at 1.16 GB
      from the first class to the last, at the same speed.
    * Blocks of ``mmap_threshold`` bytes and more (batches, activation tables, distance matrices)
      always get their own mapping, returned to the system when freed (M_MMAP_THRESHOLD). glibc
      otherwise raises the threshold to the largest block freed so far (up to 32 MB), and later
      arrays of that size are carved from the heaps, where they fragment: each class of a sweep
      then peaked 70-90 MB higher (pooled, 6 classes in one process: 1,423-1,469 MB; 1,353-1,376
      MB with a fixed 4 MB threshold; the first class 1,337 -> 1,284 MB). The blocks that fragment
      are 4-16 MB (16 MB changes nothing); 1 MB is no leaner and makes PyTorch's gradient pass
      1.4 -> 3.1 s (every tensor a fresh mapping), 4 MB costs it 0.5 s.

    Safe to call at any time; ``$ACE_MALLOC_ARENAS`` and ``$ACE_MALLOC_MMAP_THRESHOLD`` override
    the two values (0: glibc's default)."""
    arenas = int(os.environ.get("ACE_MALLOC_ARENAS", arenas))
    mmap_threshold = int(os.environ.get("ACE_MALLOC_MMAP_THRESHOLD", mmap_threshold))
    try:
        libc = ctypes.CDLL("libc.so.6")
        if arenas > 0:
            libc.mallopt(-8, arenas)  # M_ARENA_MAX
        if mmap_threshold > 0:
            libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
    except (OSError, AttributeError):  # not glibc
        pass


EXIT_TIMEOUT_S = 60.0  # how long the teardown may take before the command ends anyway ($ACE_EXIT_TIMEOUT)


def exit_now(code: int) -> None:
    """End the command with ``code`` once its work is done, skipping the interpreter's teardown.

    With torch, Prefect and scikit-learn loaded, freeing every module takes 1-2 s after the last
    exit hook, and none of it writes anything. Everything that matters runs first, in the order the
    interpreter would run it: other threads are joined and Prefect's thread exit hooks send the last
    logs and events, then the ``atexit`` hooks (logging flushed, the command's Prefect server stopped),
    then the standard streams are flushed.

    The teardown is bounded: every result is on disk before it starts, so a thread or exit hook that
    never returns (Prefect draining to a server that stopped answering, a library's thread) must not
    keep a scheduled job alive. After ``$ACE_EXIT_TIMEOUT`` seconds (60) the command says so in one
    line, writes every thread's stack to a file it names, and exits with ``code`` all the same.
    """
    import atexit
    import threading

    _exit_watchdog(code, _exit_timeout())
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    _flush_std()
    os._exit(code)


def _exit_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get("ACE_EXIT_TIMEOUT", EXIT_TIMEOUT_S)))
    except ValueError:
        return EXIT_TIMEOUT_S


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _exit_watchdog(code: int, timeout: float) -> None:
    """A daemon timer (never joined at exit) that ends the process with ``code`` after ``timeout`` s."""
    import faulthandler
    import tempfile
    import threading

    def fire() -> None:
        where = "(could not write them)"
        try:
            with tempfile.NamedTemporaryFile("w", prefix="ace-exit-", suffix=".txt", delete=False) as f:
                faulthandler.dump_traceback(f, all_threads=True)
                where = f.name
        except OSError:
            pass
        _flush_std()
        try:
            os.write(2, (f"ace: warning: the command's work is done, but its teardown (Prefect's last logs and "
                         f"events, its server's stop) did not end within {timeout:.0f} s: exiting anyway; the "
                         f"threads' stacks are in {where}\n").encode())
        except OSError:
            pass
        os._exit(code)

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.name = "ace-exit-watchdog"
    timer.start()
