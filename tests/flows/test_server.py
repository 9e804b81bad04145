"""The command's own Prefect server and the command's fast exit, for real (subprocesses)."""

import json
import os
import subprocess
import sys
import textwrap
import urllib.request

from ace.flows.server import CommandServer, start_for_command


def test_command_server_answers_and_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = CommandServer().start()
    try:
        server.wait(timeout=120)
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read()) is True
        assert server.api_url.startswith("http://127.0.0.1:")
        process = server.process
    finally:
        server.stop()
    assert process.poll() is not None  # stopped by its PID, nothing left running
    assert server.process is None
    server.stop()  # twice is harmless


def test_no_command_server_where_prefect_already_has_an_api(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert start_for_command(None) is None
    monkeypatch.delenv("PREFECT_API_URL")
    import prefect  # noqa: F401 - imported (a test harness, a library caller): its own settings win

    assert start_for_command(None) is None


def test_exit_now_runs_the_exit_hooks_as_the_interpreter_does(tmp_path):
    """The same script ended by sys.exit and by exit_now: same code, output and hooks, same order."""
    def run(end: str, out):
        code = textwrap.dedent(f"""
            import atexit, sys, threading, time
            from ace.flows.cli import exit_now
            log = open({str(out)!r}, "a")
            def worker():
                time.sleep(0.3)
                log.write("thread done\\n"); log.flush()
            threading.Thread(target=worker).start()
            threading._register_atexit(lambda: (log.write("thread hook\\n"), log.flush()))
            atexit.register(lambda: (log.write("atexit\\n"), log.flush()))
            print("printed before exit", end="")
            {end}(3)
        """)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONUNBUFFERED": ""})

    normal, fast = run("sys.exit", tmp_path / "normal.txt"), run("exit_now", tmp_path / "fast.txt")
    assert normal.returncode == fast.returncode == 3, fast.stderr
    assert normal.stdout == fast.stdout == "printed before exit"
    order = (tmp_path / "fast.txt").read_text().splitlines()
    assert order == (tmp_path / "normal.txt").read_text().splitlines()
    assert sorted(order) == ["atexit", "thread done", "thread hook"] and order[-1] == "atexit"
