"""ace-flow: Automatic Concept-based Explanations (ACE) of any PyTorch image classifier.

The public Python API (see ``docs/python.md``)::

    from ace import ACE, load
    result = ACE(model="resnet18", layers=["layer3"]).fit("zebra", "data", "work").result_

* :class:`ACE`: the estimator (parameters in ``__init__``, :meth:`ACE.fit` runs the cached flow);
* :func:`load`: a finished class of a working directory as an :class:`ACEResult`;
* :func:`explain_images`: concept maps and weights of any images (:class:`ImageExplanation`);
* :class:`ACEResult`, :class:`ConceptResult`, :class:`Evaluation`: the results, as dataclasses;
* :data:`PARAMS`: every run parameter (name, type, default, choices, help).

Names are imported on first use, so ``import ace.tasks...`` (the pure steps) stays free of Prefect.
"""

import importlib

__all__ = ["ACE", "load", "explain_images", "ACEResult", "ConceptResult", "Evaluation", "ImageExplanation", "PARAMS"]

_WHERE = {"ACE": "ace.flows.api", "load": "ace.flows.api", "explain_images": "ace.flows.api",
          "ImageExplanation": "ace.tasks.report.results", "ACEResult": "ace.tasks.report.results",
          "ConceptResult": "ace.tasks.report.results", "Evaluation": "ace.tasks.report.results",
          "PARAMS": "ace.tasks.params"}


def __getattr__(name: str):
    if name in _WHERE:
        if _WHERE[name].startswith("ace.flows"):
            import os

            # Prefect offline: no telemetry, a patient temporary server (set before Prefect loads)
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ace' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
