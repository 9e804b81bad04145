"""How an ``ace`` command ends: at once, once its work is done, and never later than a bound."""

from __future__ import annotations

import os
import sys

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
