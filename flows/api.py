"""ACE from Python: an estimator in the manner of scikit-learn, and the loading of finished results.

    from ace import ACE, load

    ace = ACE(model="efficientnet_lite0", layers=["_blocks.10"], embedding="pooled")
    result = ace.fit("zebra", "data", "work").result_     # an ace.ACEResult
    result.raising[0], result.show_concept("zebra_concept3")
    load("work", "zebra")                                   # the same, read from the working directory

``fit`` runs the same cached ``ace`` flow as ``ace run`` (or, with ``runner="local"``, the same step
functions without Prefect), so results are the same and shared with command-line runs in the same
working directory: a second ``fit`` of the same class and parameters recomputes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ace.tasks.params import FLOW_PARAMS, default, parse_layers
from ace.tasks.report.results import ACEResult, ImageExplanation

RUNNERS = ("prefect", "local")
_FIT_ARGS = ("target_class", "source_dir", "working_dir")


class ACE:
    """Automatic Concept-based Explanations of one model's layers.

    Args:
        model: ``--model_to_run``: a torchvision name, ``efficientnet_lite0``, ``ace_demo_cnn``,
            ``hub:owner/repo:entry`` or a model file.
        layers: ``--feature_names``: layer names from ``model.named_modules()``.
        **params: any other run parameter, by its flag's name (``n_clusters=25``, ``embedding="pooled"``,
            ``cav_solver="exact"``, ...; ``docs/flags.md`` lists them with their defaults).

    Attributes (after :meth:`fit`):
        result_: the :class:`ace.ACEResult` of the last class fitted.
    """

    def __init__(self, model: str = default("model_to_run"), layers: list[str] | str = default("feature_names"),
                 **params: Any) -> None:
        allowed = {p.name for p in FLOW_PARAMS} - {"model_to_run", "feature_names", *_FIT_ARGS}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise TypeError(f"ACE() got unknown parameters {unknown}; the parameters are: {', '.join(sorted(allowed))}")
        self.model = model
        self.layers = parse_layers(layers)
        self.params = dict(params)

    def get_params(self) -> dict[str, Any]:
        """The run parameters this estimator passes to every run (the flags' names)."""
        return {"model_to_run": self.model, "feature_names": list(self.layers), **self.params}

    def fit(self, target_class: str, source_dir: str | Path, working_dir: str | Path, runner: str = "prefect") -> "ACE":
        """Explain ``target_class`` (a folder of ``source_dir``, laid out as for ``ace run``); results go
        to ``working_dir``. ``runner="prefect"`` runs the ``ace`` flow (a Prefect server named in
        Prefect's settings, else a temporary one); ``"local"`` calls the same steps without Prefect.
        Returns ``self``, with :attr:`result_` set."""
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
        kwargs = {**self.get_params(), "target_class": target_class, "source_dir": str(Path(source_dir).resolve()),
                  "working_dir": str(Path(working_dir).resolve())}
        for name in ("labels_path", "model_path"):
            if kwargs.get(name):
                kwargs[name] = str(Path(kwargs[name]).expanduser().resolve())
        if runner == "prefect":
            from ace.flows.ace_flow import ace_flow

            ace_flow(**kwargs)
        else:
            from ace.flows.ace_flow import explain_locally

            explain_locally(kwargs)
        self.result_ = ACEResult.load(working_dir, target_class)
        return self

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"ACE(model={self.model!r}, layers={self.layers!r}{extra})"


def explain_images(working_dir: str | Path, target_class: str, images: list[str | Path] | str | Path,
                   runner: str = "prefect") -> list[ImageExplanation]:
    """Concept maps and concept weights of ``images`` (files or folders) with the concepts of
    ``target_class`` as its run in ``working_dir`` found them (``ace explain-images``); one
    :class:`ace.ImageExplanation` per image and layer."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    paths = [str(Path(p).resolve()) for p in ([images] if isinstance(images, (str, Path)) else images)]
    wd = str(Path(working_dir).resolve())
    if runner == "prefect":
        from ace.flows.images_flow import explain_images_flow as run
    else:
        from ace.flows.images_flow import explain_images_locally as run
    page = Path(run(target_class=target_class, working_dir=wd, images=paths))
    return [ImageExplanation.load(p) for p in sorted(page.parent.glob("*/*/map.json"))
            if json.loads(p.read_text())["image"] in set(_files(paths))]


def _files(paths: list[str]) -> list[str]:
    from ace.tasks.algorithm.images import image_files

    return [f for f, _, _ in image_files(paths)]


def load(working_dir: str | Path, target_class: str) -> ACEResult:
    """The result of ``target_class`` in ``working_dir`` (written by ``ace run`` or :meth:`ACE.fit`)."""
    return ACEResult.load(working_dir, target_class)
