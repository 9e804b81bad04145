"""ACE's steps as Prefect tasks, and the two ways the flow runs them.

Each :class:`Step` pairs a pure function of :mod:`ace.tasks` (arrays in, arrays out, files written
to ``out``) with its thin Prefect task: cached on the content keys of its inputs and its code
version, retried once unless the input is bad, named in the Prefect UI for what it works on
(``embed-zebra-superpixels-_blocks.10``, ``cav-tcav-zebra-_blocks.10-random500_7``).

The flow's body (:func:`ace.flows.ace_flow.explain`) calls steps through an executor:

* :class:`PrefectSteps`, inside the ``ace`` flow: each step a task run (submitted, mapped, cached);
* :class:`LocalSteps`, without Prefect (``ACE(...).fit(..., runner="local")``): the same functions
  called in order in this process, writing the same files at the same paths, so both share a
  working directory.

Either way the step's function is looked up in its module when it runs (tests replace it there).
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from prefect import task, unmapped
from prefect.tasks import Task

from ace.flows.artifacts import publish_artifacts, results_with_progress
from ace.flows.caching import (fresh, map_fresh, outputs_exist, params_cache_key, retry_unless_input_error,
                               returns_out, run_step)
from ace.storage.keys import content_key
from ace.tasks.algorithm import cav, cluster, concept_maps, embed, evaluate, images, stats, superpixels
from ace.tasks.models import loader
from ace.tasks.models.loader import weights_stamp
from ace.tasks.report import image_page, writer
from ace.tasks.versions import STEP_VERSIONS


def _with_label(fn: Callable) -> Callable:
    """``fn``'s signature plus a keyword-only ``label`` (the task run's name; never part of a cache key)."""
    sig = inspect.signature(fn)
    label = inspect.Parameter("label", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str)
    return sig.replace(parameters=[*sig.parameters.values(), label])


@dataclass(frozen=True)
class Step:
    """A pure step function and its Prefect task."""

    name: str
    fn: Callable
    load: Callable = returns_out
    task: Task = field(repr=False, default=None)
    release: Callable | None = None  # run after the step in any runner: what the process may let go of now

    def execute(self, args: tuple, kwargs: dict) -> Any:
        """Run the step in this process, whichever runner called it: its function as its module has
        it now (tests replace it there), then ``release``."""
        return _execute(self.fn, self.load, self.release, args, kwargs)


def _execute(fn: Callable, load: Callable, release: Callable | None, args: tuple, kwargs: dict) -> Any:
    current = getattr(sys.modules[fn.__module__], fn.__name__)
    result = run_step(current, load, args, kwargs, list(inspect.signature(fn).parameters))
    if release is not None:
        release()
    return result


def _step(name: str, fn: Callable, load: Callable = returns_out, cache_key_fn: Callable = params_cache_key,
          after: Callable | None = None, release: Callable | None = None, **options) -> Step:
    def body(*args, label: str = "", **kwargs):
        result = _execute(fn, load, release, args, kwargs)
        if after is not None:
            after(inspect.signature(fn).bind(*args, **kwargs).arguments, result)
        return result

    functools.update_wrapper(body, fn)
    body.__signature__ = _with_label(fn)
    options = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": retry_unless_input_error, **options}
    t = task(name=name, task_run_name=f"{name}-{{label}}", cache_key_fn=cache_key_fn, persist_result=True,
             **options)(body)
    return Step(name, fn, load, t, release)


def _resolve_cache_key(context, parameters) -> str:
    labels = parameters.get("labels_path")
    stamp = [labels, Path(labels).stat().st_mtime_ns] if labels and Path(labels).is_file() else [labels]
    keyed = {k: v for k, v in parameters.items() if k != "label"}
    return content_key("resolve", STEP_VERSIONS["resolve-model"], keyed,
                       weights_stamp(parameters["model_to_run"], parameters["model_path"]), stamp)


def _scan_cache_key(context, parameters) -> str | None:
    """The scan, cached on the folders' listings (names, sizes, mtimes), so a changed file rescans."""
    src = Path(parameters["source_dir"])
    try:
        stamps = {d.name: images.folder_stamp(d) for d in sorted(src.iterdir()) if d.is_dir()}
    except OSError:
        return None
    keyed = {k: v for k, v in parameters.items() if k not in ("source_dir", "label")}
    return content_key("scan", STEP_VERSIONS["scan-images"], str(src.resolve()), stamps, keyed)


def _publish(arguments: dict, summary: str) -> None:
    from ace.storage.layout import WorkDir

    info = arguments["info"]
    publish_artifacts(info, arguments["scores"], summary, WorkDir(arguments["workdir"]).target(info.target_class).page)


RESOLVE = _step("resolve-model", loader.resolve, cache_key_fn=_resolve_cache_key, retries=0)
COMPILE = _step("compile-model", loader.write_compiled)
SCAN = _step("scan-images", images.scan_source, cache_key_fn=_scan_cache_key, retries=0)
LOAD_IMAGES = _step("load-images", images.write_images)
SUPERPIXELS = _step("superpixels", superpixels.write_segments)
EMBED = _step("embed", embed.write_activations)
GRADIENTS = _step("gradients", embed.write_gradients)
CLUSTER = _step("cluster", cluster.write_clusters)
FILTER_CONCEPTS = _step("filter-concepts", cluster.write_concepts)
CONCEPT_ACTS = _step("concept-activations", cav.write_concept_acts)
CAV_TCAV = _step("cav-tcav", cav.score_random_set, load=cav.read_random_set_scores)
# the test comes after every CAV task of a class: the arrays they shared go before the next class
STATISTICAL_TEST = _step("statistical-test", stats.significance, release=cav.release_shared)
EVALUATE = _step("evaluate", evaluate.evaluate_concepts)
REPORT = _step("report", writer.write_report, load=writer.read_stamp, after=_publish)
CONCEPT_TABLE = _step("concept-table", concept_maps.write_concept_table)
EXPLAIN_IMAGE = _step("explain-image", image_page.explain_image_file, load=image_page.read_image_stamp)
IMAGES_PAGE = _step("images-page", image_page.write_images_index, cache_key_fn=lambda *_: None)


def run_label(*parts: Any) -> str:
    """A task run's name from what it works on (``zebra``, ``_blocks.10``, ``random500_7``)."""
    return "-".join(re.sub(r"\s+", "_", str(p)) for p in parts if p not in (None, ""))


class PrefectSteps:
    """Runs steps as Prefect task runs of the current flow run."""

    prefect = True

    def run(self, step: Step, *args, label: str, **kwargs) -> Any:
        out = kwargs.get("out")
        t = step.task if out is None else fresh(step.task, out)
        return t(*args, label=label, **kwargs)

    def submit(self, step: Step, *args, label: str, **kwargs):
        return fresh(step.task, kwargs["out"]).submit(*args, label=label, **kwargs)

    def map(self, step: Step, outs: list, labels: list[str], shared: dict, **mapped) -> list:
        return map_fresh(step.task, outs, label=labels, **mapped, **{k: unmapped(v) for k, v in shared.items()})

    def results(self, futures: list, description: str) -> list:
        return results_with_progress(futures, description)


class _Done:
    """A finished step, shaped like a Prefect future."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class LocalSteps:
    """Runs the steps' functions one after another in this process, without Prefect: the same
    files at the same paths (work already in the working directory is read, not redone)."""

    prefect = False

    def run(self, step: Step, *args, label: str, **kwargs) -> Any:
        return step.execute(args, kwargs)

    def submit(self, step: Step, *args, label: str, **kwargs) -> _Done:
        return _Done(self.run(step, *args, label=label, **kwargs))

    def map(self, step: Step, outs: list, labels: list[str], shared: dict, **mapped) -> list:
        return [_Done(self.run(step, **{k: v[i] for k, v in mapped.items()}, **shared, out=out, label=labels[i]))
                for i, out in enumerate(outs)]

    def results(self, futures: list, description: str) -> list:
        return [f.result() for f in futures]


__all__ = ["Step", "PrefectSteps", "LocalSteps", "run_label", "outputs_exist"]
