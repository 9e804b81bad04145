"""Book-keeping of flow runs in a working directory: what a killed run leaves behind is cleaned up
when the working directory is next used.

While a flow run works on a working directory it keeps ``runs/<flow run id>.json`` (host and
process id) there. At the start of every run, the records of dead processes on this host are
read: their flow runs, if still ``Running`` on the Prefect server, are marked ``Crashed``; and the
``*.part`` files of dead processes are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from ace.storage.atomic import clean_stale_parts, pid_alive, write_text
from ace.storage.layout import WorkDir

log = logging.getLogger("ace.runs")


def _current_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # pragma: no cover - outside a flow run
        return None


def mark_crashed(flow_run_id: str, message: str) -> bool:
    """Mark a flow run ``Crashed`` if the server still has it in a non-final state."""
    from prefect import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            if run.state is None or run.state.is_final():
                return False
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
            return True
    except Exception as e:  # the server may not know the run (another server, a deleted run)
        log.debug("could not mark flow run %s crashed: %s", flow_run_id, e)
        return False


def reap_dead_runs(working_dir: str | Path) -> list[str]:
    """Clean up after dead processes of this host: mark their flow runs Crashed, remove their
    ``*.part`` files. Returns the ids of the flow runs marked Crashed."""
    wd = WorkDir(str(working_dir))
    host = socket.gethostname()
    crashed = []
    if wd.runs_dir.is_dir():
        for record in wd.runs_dir.glob("*.json"):
            try:
                info = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if info.get("host") != host or pid_alive(int(info.get("pid", 0))):
                continue
            if mark_crashed(record.stem, f"its process ({host}, pid {info.get('pid')}) died while it ran; "
                                         "run the same command again to resume from the cached steps"):
                crashed.append(record.stem)
                log.warning("flow run %s was left Running by a dead process: marked Crashed", record.stem)
            record.unlink(missing_ok=True)
    for path in clean_stale_parts(wd.path):
        log.info("removed %s, left by a dead process", path)
    return crashed


@contextlib.contextmanager
def tracked_run(working_dir: str | Path) -> Iterator[None]:
    """Reap dead runs, then record this flow run in the working directory while the block runs."""
    reap_dead_runs(working_dir)
    run_id = _current_run_id()
    record = WorkDir(str(working_dir)).runs_dir / f"{run_id}.json" if run_id else None
    if record is not None:
        write_text(record, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        yield
    finally:
        if record is not None:
            record.unlink(missing_ok=True)


def note_code_versions(wd: WorkDir) -> list[str]:
    """Say which steps' code changed since this working directory was last used (their outputs, and
    those of the steps after them, are recomputed; the rest are reused), then record the current
    versions (:data:`ace.tasks.versions.STEP_VERSIONS`). Returns the changed steps."""
    from ace.tasks.versions import STEP_VERSIONS

    record = wd.code_versions
    try:
        before = json.loads(record.read_text()) if record.is_file() else None
    except (OSError, ValueError):
        before = None
    if before is None and any(wd.path.glob("classes/*/results_summaries/ace_results.json")):
        before = {}  # made by a version that did not record its steps' versions
    # a step the record does not name is new (nothing of it can be here), unless the record is a legacy {}
    changed = [] if before is None else [s for s, n in STEP_VERSIONS.items()
                                         if before.get(s) != n and (s in before or not before)]
    if changed:
        lines = ", ".join(f"{s} ({before.get(s, 'unversioned')} -> {STEP_VERSIONS[s]})" for s in changed)
        kept = [s for s in STEP_VERSIONS if s not in changed]
        message = (f"the code of these steps changed since {wd.root} was last used: {lines}. Their results, and "
                   "those of the steps that use them, are recomputed; reused where their inputs are the same: "
                   f"{', '.join(kept) or 'nothing'}")
        try:
            from prefect import get_run_logger

            get_run_logger().warning(message)
        except Exception:  # outside a flow run (ACE(...).fit(..., runner="local"))
            log.warning(message)
    if before != STEP_VERSIONS:
        write_text(record, json.dumps(STEP_VERSIONS, indent=1))
    return changed
