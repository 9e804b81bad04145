"""The Prefect API of one ``ace`` command when no server is configured.

Prefect would start a temporary server itself, but only when the flow begins, after every import
(about 4 s of server start-up plus 2-3 s of importing the server's code into the command's own
process), and its shutdown errors reach the terminal. :class:`CommandServer` starts the same
server (uvicorn with Prefect's app, ephemeral services, the profile's database) in a subprocess
as the command's very first step, so it boots on another core while the command imports torch and
checks its input; its output goes to a temporary file that is shown only if it fails to start.
Once Prefect is imported, :func:`adopt` points it at that server with ``PREFECT_API_URL``, unless
Prefect's settings (a profile, ``prefect.toml``) name a server: then that one is used. The command
stops its server (by PID) when it ends.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from importlib.util import find_spec

PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# run as the server's process: on Linux the kernel sends it SIGTERM when the command dies (even by
# SIGKILL, when no exit hook runs), so no server is left behind; then uvicorn runs as `-m uvicorn`.
# (Set in the child itself, not by a preexec_fn: forking with a Python callable is unsafe once
# the command has threads.)
SERVER_MAIN = """
import os, runpy, signal, sys
parent = int(sys.argv.pop(1))
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the command died before prctl took effect
        sys.exit(0)
try:  # every SQLite write transaction takes the write lock when it begins (see IMMEDIATE_WRITES)
    from prefect.server.database.configurations import AioSqliteConfiguration as _C
    _begin = _C.begin_transaction
    _C.begin_transaction = lambda self, session, with_for_update=False: _begin(self, session, True)
except (ImportError, AttributeError):
    pass
sys.argv[0] = "uvicorn"
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""
# IMMEDIATE_WRITES: Prefect's SQLite transactions begin DEFERRED: one that reads, then writes while
# another connection (the services that record events and task runs) has written in between fails at
# once with "database is locked" (SQLite cannot upgrade a stale snapshot); the API answers 503 and
# the client retries 2 s later. It happened at the start of every second class of a sweep. Begun
# IMMEDIATE, a transaction waits for the lock (busy_timeout, 60 s) instead; on the command's own
# server, with one client, that costs nothing.


# Prefect's server registers every block type it can import when it starts (importing the
# installed collections, prefect-dask among them, and hashing its settings to skip it the next
# time): ~0.35 s of each command's start-up. The command's own server serves its flow runs, which use
# no block; a server you start yourself registers them as usual.
NO_BLOCK_REGISTRATION = {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
                         "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}


class CommandServer:
    """A Prefect server for the lifetime of one command, on a free 127.0.0.1 port.

    ``start()`` returns at once (a thread watches the server boot); ``wait()`` blocks until its API
    answers; ``stop()`` terminates the process (SIGTERM, then SIGKILL after 5 s) and is registered
    with ``atexit``.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._log = None
        self._ready = threading.Event()
        atexit.register(self.stop)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> "CommandServer":
        prefect_dir = find_spec("prefect").submodule_search_locations[0]
        self.port = free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1", **NO_BLOCK_REGISTRATION}
        env.pop("PREFECT_API_URL", None)
        self._log = self._log or tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, str(os.getpid()), "--app-dir", os.path.dirname(prefect_dir),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self._ready = threading.Event()
        threading.Thread(target=_watch, args=(self.process, self.api_url, self._ready), daemon=True,
                         name="ace-server-watch").start()
        return self

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the server answers; raise RuntimeError with its output if it cannot start."""
        deadline, reason = time.monotonic() + timeout, f"did not answer within {timeout:.0f} s"
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return
            code = self.process.poll() if self.process is not None else -1
            if code == PORT_IN_USE:  # another process took the port meanwhile: try another
                self.start()
            elif code is not None:
                reason = f"exited with status {code} while starting"
                break
        output = self.output()
        self.stop()
        raise RuntimeError(f"the local Prefect server {reason}" + (f"; its output:\n{output}" if output else ""))

    def ready(self) -> bool:
        """Whether the server answers its API now (never blocks)."""
        return self._ready.is_set()

    def output(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        p, self.process = self.process, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _watch(process: subprocess.Popen, api_url: str, ready: threading.Event) -> None:
    """Set ``ready`` once the server at ``api_url`` answers ``/health`` and then its first API call
    (``/admin/version``, which Prefect's client makes first and which takes the server 0.3 s):
    made here, that call overlaps the command's own work instead of delaying its flow."""
    while process.poll() is None:
        try:
            for path, timeout in (("health", 1), ("admin/version", 30)):
                with urllib.request.urlopen(f"{api_url}/{path}", timeout=timeout) as r:
                    if r.status != 200:
                        raise ConnectionError(r.status)
            ready.set()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.05)


def start_for_command(dask_address: str | None) -> CommandServer | None:
    """Start a :class:`CommandServer` early, unless Prefect is already imported (a test harness or a
    library caller: its own settings stand), ``PREFECT_API_URL`` is set, the command runs on a Dask
    cluster (its workers may be on other machines), or ``ACE_LOCAL_SERVER=0``."""
    if (os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or dask_address
            or os.environ.get("ACE_LOCAL_SERVER", "1") == "0"):
        return None
    return CommandServer().start()


def adopt(server: CommandServer | None) -> CommandServer | None:
    """Point Prefect at ``server`` once Prefect is imported, unless its settings name a server of
    their own (a profile, ``prefect.toml``, ``.env``): then that one is used and ``server`` is
    stopped. Returns the server in use, or None."""
    if server is None:
        return None
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        server.stop()
        return None
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect read its settings at import, before the URL was set
    return server


def run_settings(server: CommandServer | None):
    """The Prefect settings of the command's flow runs: on its own server, no flow-run heartbeats.
    They let a long-lived server tell crashed runs from live ones; this one ends with the command,
    and a flow run waits up to 1 s (0.5 s on average) for its heartbeat thread to stop."""
    import contextlib

    if server is None:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


# what a run imports on its way, most needed first: imported while the server boots, they cost
# nothing later (the flow module itself, then the model's own package, SLIC, KMeans, the CAV
# solvers, the t-test)
FLOW_IMPORTS = ("ace.flows.ace_flow", "ace.flows.classes", "prefect.utilities.visualization")
STEP_IMPORTS = ("skimage.segmentation.slic_superpixels", "sklearn.cluster", "sklearn.metrics", "sklearn.svm",
                "sklearn.model_selection", "sklearn.linear_model", "scipy.stats")
LATER_IMPORTS = FLOW_IMPORTS + STEP_IMPORTS


def later_imports(model_modules: tuple[str, ...] = ()) -> tuple[str, ...]:
    """:data:`LATER_IMPORTS` with the modules that build the run's model (torchvision: 1.5-2 s)."""
    return FLOW_IMPORTS + tuple(model_modules) + STEP_IMPORTS


def import_while_booting(server: CommandServer | None, modules: tuple[str, ...] = LATER_IMPORTS) -> list[str]:
    """Import ``modules`` in order until ``server`` answers (the main thread would only wait);
    returns those imported here. One that is not installed is left for the run to report."""
    import importlib

    done = []
    for name in modules:
        if server is None or server.ready():
            break
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        done.append(name)
    return done


def check_reachable(dask_address: str | None, timeout: float = 5.0) -> str | None:
    """Why the command cannot run, as one line, or None: the Prefect server named in Prefect's
    settings (``PREFECT_API_URL``, a profile) does not answer ``/health``, or nothing listens at
    ``--dask_address``. Each probe waits at most ``timeout`` seconds (two tries for the server)."""
    from urllib.parse import urlparse

    if dask_address:
        parsed = urlparse(dask_address if "://" in dask_address else f"tcp://{dask_address}")
        try:
            with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 8786), timeout=timeout):
                pass
        except (OSError, ValueError) as e:
            return (f"no Dask scheduler answers at --dask_address {dask_address} ({getattr(e, 'strerror', None) or e}): "
                    "start one (`dask scheduler`, then workers) or leave --dask_address out to run here")
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return None
    reason = ""
    for _ in range(2):
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout / 2) as r:
                if r.status == 200:
                    return None
                reason = f"HTTP {r.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = str(getattr(e, "reason", None) or e)
        time.sleep(0.2)
    return (f"the Prefect server at {url} (PREFECT_API_URL or the Prefect profile) does not answer ({reason}): "
            "start it (`prefect server start`), or unset PREFECT_API_URL to let ace start its own")
