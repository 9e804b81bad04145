"""The command's own Prefect server and the command's fast exit, for real (subprocesses)."""

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from ace.flows.server import CommandServer, start_for_command

ROOT = Path(__file__).resolve().parents[2]


def test_command_server_answers_and_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = CommandServer().start()
    try:
        assert not server.ready()  # booting takes seconds; ready() never blocks
        server.wait(timeout=120)
        assert server.ready()
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read()) is True
        assert server.api_url.startswith("http://127.0.0.1:")
        # no block types registered at start (~0.35 s of every command's start-up): its runs use none
        request = urllib.request.Request(f"{server.api_url}/block_types/filter", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200 and json.loads(r.read()) == []
        process = server.process
    finally:
        server.stop()
    assert process.poll() is not None  # stopped by its PID, nothing left running
    assert server.process is None
    server.stop()  # twice is harmless


def test_a_write_that_meets_another_writer_waits_instead_of_failing(tmp_path, monkeypatch):
    """Another connection holds SQLite's write lock and commits while the API creates a task run
    (a read, then a write): on the command's server the request waits for the lock and succeeds.
    Prefect's DEFERRED transactions fail at once with "database is locked" (a 503 that the client
    retries 2 s later; seen at the start of every second class of a sweep)."""
    import sqlite3
    import threading
    import urllib.error

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = CommandServer().start()

    def post(path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(f"{server.api_url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, {}

    try:
        server.wait(timeout=120)
        status, flow = post("/flows/", {"name": "lock-test"})
        assert status in (200, 201)
        status, flow_run = post("/flow_runs/", {"flow_id": flow["id"]})
        assert status == 201
        db = sqlite3.connect(tmp_path / "home" / "prefect.db", isolation_level=None, timeout=60,
                             check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS ace_lock_test (x)")
        db.execute("INSERT INTO ace_lock_test VALUES (1)")
        locked = threading.Event()

        def commit_later() -> None:
            locked.wait(30)
            time.sleep(1.0)  # the API's transaction has begun and is waiting for the lock
            db.execute("COMMIT")

        writer = threading.Thread(target=commit_later)
        writer.start()
        locked.set()
        began = time.monotonic()
        statuses = [post("/task_runs/", {"flow_run_id": flow_run["id"], "task_key": f"k{i}", "dynamic_key": "0"})[0]
                    for i in range(3)]
        waited = time.monotonic() - began
        writer.join()
        db.close()
    finally:
        server.stop()
    assert statuses == [201, 201, 201]
    assert 0.5 < waited < 30  # the first request waited for the other writer's commit


@pytest.mark.parametrize("main, timeout, reason, output", [
    ("import sys; print('no database here'); sys.exit(1)", 60, "exited with status 1 while starting", "no database here"),
    ("import time; print('booting', flush=True); time.sleep(60)", 2, "did not answer within 2 s", "booting"),
])
def test_a_server_that_does_not_start_is_reported_with_its_output_and_stopped(monkeypatch, main, timeout, reason,
                                                                               output):
    import ace.flows.server as server_module

    monkeypatch.setattr(server_module, "SERVER_MAIN", main)
    server = CommandServer().start()
    process = server.process
    with pytest.raises(RuntimeError) as e:
        server.wait(timeout=timeout)
    assert reason in str(e.value) and output in str(e.value)
    assert process.poll() is not None  # stopped, not left behind
    assert server.process is None and not server.ready()


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


def test_a_server_named_in_the_prefect_profile_is_used(prefect_server, demo_world, tmp_path):
    """No PREFECT_API_URL in the environment, but the active profile names a server: the run goes
    there (no server of the command's own)."""
    from pathlib import Path

    url = prefect_server["PREFECT_API_URL"]
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text(f'active = "team"\n\n[profiles.team]\nPREFECT_API_URL = "{url}"\n')
    env = {k: v for k, v in prefect_server.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="INFO")
    wd = tmp_path / "wd"
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "ace_run.py"), "--target_class", "disc_square", "--source_dir",
                        str(demo_world), "--working_dir", str(wd), "--model_to_run", "ace_demo_cnn", "--labels_path",
                        str(demo_world / "labels.txt"), "--feature_names", "block3", "--num_random_exp", "2",
                        "--max_imgs", "6", "--min_imgs", "3", "--n_clusters", "3"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    req = urllib.request.Request(url + "/flow_runs/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        runs = json.load(resp)
    mine = [run for run in runs if run["parameters"].get("working_dir") == str(wd)]
    assert len(mine) == 1 and mine[0]["state_type"] == "COMPLETED"
    assert f"View at {url[:-len('/api')]}" in r.stderr  # Prefect links the run on that server


def test_the_server_dies_with_a_killed_command(demo_world, tmp_path):
    """kill -9 of the command alone (no exit hook runs): its server does not outlive it."""
    import signal
    import time
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(root / "ace_run.py"), "--target_class", "disc_square", "--source_dir",
                             str(demo_world), "--working_dir", str(tmp_path / "wd"), "--model_to_run", "ace_demo_cnn",
                             "--labels_path", str(demo_world / "labels.txt"), "--feature_names", "block3"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    server_pid = None
    while server_pid is None and time.monotonic() < deadline and proc.poll() is None:
        pids = children.read_text().split()
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"prefect.server.api.server:create_app" in cmdline:
                server_pid = int(pid)
        time.sleep(0.05)
    assert server_pid is not None, "the command started no server"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{server_pid}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{server_pid}/stat").read_text().split()[2] if Path(f"/proc/{server_pid}").exists() else "X"
        if state == "Z":  # exited, waiting for init to reap it
            break
        time.sleep(0.1)
    alive = Path(f"/proc/{server_pid}").exists() and Path(f"/proc/{server_pid}/stat").read_text().split()[2] != "Z"
    if alive:
        os.kill(server_pid, signal.SIGKILL)
    assert not alive, "the server outlived its command"


def test_imports_while_booting_stop_when_the_server_answers():
    from ace.flows.server import LATER_IMPORTS, import_while_booting

    class Booting:
        def __init__(self, answers_after: int):
            self.calls, self.answers_after = 0, answers_after

        def ready(self) -> bool:
            self.calls += 1
            return self.calls > self.answers_after

    assert import_while_booting(Booting(2), ("json", "csv", "wave")) == ["json", "csv"]
    assert import_while_booting(Booting(0), ("json",)) == []
    assert import_while_booting(None) == []
    assert import_while_booting(Booting(9), ("json", "no_such_module_ace", "csv")) == ["json", "csv"]
    assert LATER_IMPORTS[0] == "ace.flows.ace_flow"  # the module the command needs first
    import importlib.util

    assert all(importlib.util.find_spec(name) is not None for name in LATER_IMPORTS)


def test_the_model_package_is_imported_while_booting_right_after_the_flow():
    from ace.flows.server import FLOW_IMPORTS, LATER_IMPORTS, later_imports
    from ace.tasks.models.zoo import model_modules

    assert model_modules("resnet18") == ("torchvision",)
    assert model_modules("efficientnet_lite0") == ("efficientnet_lite_pytorch",)
    assert model_modules("ace_demo_cnn") == ()
    order = later_imports(model_modules("resnet18"))
    assert order[:len(FLOW_IMPORTS) + 1] == (*FLOW_IMPORTS, "torchvision")
    assert sorted(order) == sorted((*LATER_IMPORTS, "torchvision"))


def test_flow_runs_on_the_commands_own_server_send_no_heartbeats():
    from prefect.settings import get_current_settings

    from ace.flows.server import run_settings

    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default: a heartbeat every few minutes
    with run_settings(CommandServer()):
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before
    with run_settings(None):  # a configured server keeps them: it outlives the command
        assert get_current_settings().flows.heartbeat_frequency == before


@pytest.mark.parametrize("what", ["prefect", "dask"])
def test_an_unreachable_server_or_scheduler_is_one_line_within_15_s(what, demo_world, tmp_path):
    """A PREFECT_API_URL that nobody answers, or a --dask_address with no scheduler: ace: error:, exit 2."""
    import time

    from ace.flows.server import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    argv = ["--target_class", "disc_square", "--source_dir", str(demo_world), "--working_dir", str(tmp_path / "wd"),
            "--model_to_run", "ace_demo_cnn", "--labels_path", str(demo_world / "labels.txt"),
            "--feature_names", "block3", "--num_random_exp", "3", "--max_imgs", "6", "--min_imgs", "3"]
    if what == "prefect":
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    else:
        argv += ["--dask_address", f"tcp://127.0.0.1:{port}"]
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "ace_run.py"), *argv], capture_output=True, text=True, env=env,
                         timeout=120)
    elapsed = time.monotonic() - start
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines[-1].startswith("ace: error: ") and f"127.0.0.1:{port}" in lines[-1], lines[-1]
    assert ("Prefect server" if what == "prefect" else "Dask scheduler") in lines[-1]
    assert elapsed < 15, elapsed
    assert not (tmp_path / "wd" / "classes").exists()


def test_a_teardown_that_never_ends_is_cut_short(tmp_path):
    """A thread that is never done (exit waits for it) and an exit hook that hangs: the command still
    ends, with its own exit code, one warning line, and the stacks in the file it names."""
    code = textwrap.dedent("""
        import atexit, threading, time
        from ace.flows.cli import exit_now
        threading.Thread(target=time.sleep, args=(600,), name="stuck-thread").start()
        atexit.register(time.sleep, 600)
        print("report written")
        exit_now(3)
    """)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "ACE_EXIT_TIMEOUT": "1"})
    assert time.monotonic() - start < 30
    assert r.returncode == 3 and r.stdout == "report written\n"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ace: warning: the command's work is done"), r.stderr
    stacks = Path(lines[0].rsplit(" ", 1)[1])
    text = stacks.read_text()
    assert text.count("Thread 0x") >= 2 and "threading.py" in text  # the main thread and the stuck one
    stacks.unlink()
