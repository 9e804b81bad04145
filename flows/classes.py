"""Several classes in one run: a parent flow with one ``ace`` subflow per class.

Each subflow runs its tasks on the parent's task runner (a copy of it: ``--num_parallel_runs``
threads or the ``--dask_address`` cluster); Prefect would otherwise give a subflow the runner of
its own decorator. A class that fails (a missing folder, too few images, an unknown label) is
reported and the others go on; the parent ends with a table of every class (status, concepts
kept, the top concept, the report) on the terminal and as a Prefect table artifact.
"""

from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from ace.flows.ace_flow import ace_flow
from ace.flows.parameters import bind, run_parameters
from ace.tasks.errors import ACEInputError
from ace.tasks.report.writer import read_summary
from ace.tasks.params import check_parameters


@dataclass(frozen=True)
class ClassResult:
    """How one class of a multi-class run ended."""

    target_class: str
    status: str  # "done" or "failed"
    kept: str = "-"
    top_concept: str = "-"
    report: str = "-"
    error: str = ""
    input_error: bool = False


def _failure(state) -> tuple[str, bool]:
    try:
        state.result()
    except ACEInputError as e:
        return str(e), True
    except BaseException as e:  # noqa: BLE001 - reported in the table, the other classes go on
        return f"{type(e).__name__}: {e}", False
    return state.message or "failed", False


def summary_table(results: list[ClassResult]) -> str:
    """The classes as a fixed-width text table (one line each)."""
    head = ("class", "status", "concepts kept", "top concept", "report or error")
    rows = [(r.target_class, r.status, r.kept, r.top_concept, r.report if r.status == "done" else r.error)
            for r in results]
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + str(row[4])
                     for row in [head, *rows])


@flow(name="ace-classes", log_prints=True, validate_parameters=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
@run_parameters(classes=True)
def ace_classes_flow(**params: Any) -> list[ClassResult]:
    """Explain every class of ``target_classes`` in one working directory, one ``ace`` subflow each
    (their reports in ``classes/<class>/``; everything else is shared). Returns a
    :class:`ClassResult` per class; the run fails only when every class failed."""
    params = bind(ace_classes_flow.fn, params)
    classes = list(dict.fromkeys(params.pop("target_classes")))
    params["n_jobs"] = check_parameters(target_class=classes, **params)
    working_dir = params["working_dir"]
    results = []
    context = FlowRunContext.get()
    one_class = ace_flow.with_options(task_runner=context.task_runner) if context and context.task_runner else ace_flow
    for target in classes:
        state = one_class(target_class=target, **params, return_state=True)
        if state.is_completed():
            summary = state.result()
            s = read_summary(summary)
            results.append(ClassResult(target, "done", f"{s['kept']}/{s['concepts']}", s["top_concept"], summary))
        else:
            message, is_input = _failure(state)
            print(f"class {target!r} failed: {message}")
            results.append(ClassResult(target, "failed", error=message, input_error=is_input))
    print("ACE classes:\n" + summary_table(results))
    create_table_artifact(
        key="ace-classes", description=f"ACE, {len(classes)} classes in {working_dir}",
        table=[{"class": r.target_class, "status": r.status, "concepts kept": r.kept, "top concept": r.top_concept,
                "report or error": r.report if r.status == "done" else r.error} for r in results])
    if results and all(r.status == "failed" for r in results):
        raise ACEInputError(f"every class failed: {results[0].target_class}: {results[0].error}") \
            if all(r.input_error for r in results) else RuntimeError("every class failed")
    return results
