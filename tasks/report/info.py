"""What the report says about a run, beyond the scores (small dataclasses, passed between tasks)."""

from __future__ import annotations

from dataclasses import dataclass

from ace.tasks.params import default


@dataclass(frozen=True)
class ReportInputs:
    """What the report reads beyond the scores: the clusters of each layer (``(layer, path)`` pairs),
    how the images were resized, the SSC/SDC evaluation (a path, or None when not run) and, with it,
    the scoring images' images table and segments table (``(images, segments)``, for "where each
    concept fires")."""

    clusters: tuple[tuple[str, str], ...] = ()
    resize: str = "squash"
    evaluation: str | None = None
    parameters: str = "{}"  # the flow's parameters (JSON), for ``ace evaluate`` to run the same flow again
    scoring: tuple[str, str] | None = None


@dataclass(frozen=True)
class RunInfo:
    """What the summary's header says about the run."""

    target_class: str
    class_index: int
    model: str
    layers: tuple[str, ...]
    num_random_exp: int
    n_discovery: int
    n_scoring: int
    alpha: float
    correction: str
    scoring_accuracy: float = float("nan")
    test: str = default("test")
    settings: tuple[tuple[str, str], ...] = ()  # more of the run's flags, shown in the HTML report
