"""What a flow run shows in the Prefect UI beyond its logs: the class's summary, a table of its
concepts, a link to its HTML report, and the progress of the CAV fan-out."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ace.tasks.algorithm.stats import ConceptScore
from ace.tasks.report.info import RunInfo

log = logging.getLogger("ace.runs")


def publish_artifacts(info: RunInfo, scores: list[ConceptScore], summary: str, page: Path) -> None:
    """The Prefect UI gets the summary, a table of the concepts and a link to the HTML report."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    slug = re.sub(r"[^a-z0-9]+", "-", f"ace-{info.target_class}".lower()).strip("-")
    create_markdown_artifact(key=slug, markdown=f"# ACE: {info.target_class}\n\n```\n{Path(summary).read_text()}```\n",
                             description=f"ACE results, {summary}")
    order = sorted(scores, key=lambda s: (not s.significant, s.direction != "raises", -s.tcav_mean))
    create_table_artifact(key=f"{slug}-concepts", description=f"ACE concepts of '{info.target_class}'", table=[
        {"layer": s.layer, "concept": s.concept, "significant": s.significant,
         "direction": s.direction if s.significant else "-", "mean TCAV": round(s.tcav_mean, 4),
         "std": round(s.tcav_std, 4), "effect": round(s.effect, 4), "p-value": float(f"{s.p_value:.3g}"),
         "CAV accuracy": round(s.cav_accuracy, 4)} for s in order])
    create_link_artifact(key=f"{slug}-report", link=page.resolve().as_uri(), link_text=f"ACE report: {info.target_class}",
                         description="the HTML report (open it on the machine that ran the flow)")


def results_with_progress(futures: list, description: str) -> list:
    """The results of mapped task runs, in order, while a Prefect progress artifact (and the log)
    says how many have finished."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.futures import as_completed

    total, done = len(futures), 0
    try:
        artifact = create_progress_artifact(progress=0.0, description=description)
    except Exception as exc:  # pragma: no cover - progress is a convenience, never a failure
        log.debug("no progress artifact: %s", exc)
        artifact = None
    step = max(1, total // 4)  # each update is a call to the API (35 ms of the server's time): a few
    for f in as_completed(futures):
        f.result()  # a failed run fails the flow here, as it did before
        done += 1
        if done % step == 0 or done == total:
            if artifact is not None:
                update_progress_artifact(artifact_id=artifact, progress=100.0 * done / total)
            print(f"{description}: {done}/{total} done")
    return [f.result() for f in futures]
