"""The flows' signatures, made from the one definition of the parameters (:data:`ace.tasks.params.PARAMS`).

Prefect reads a flow's parameters (the deployments' schema, validation, ``--param name=value``)
from its signature; :func:`run_parameters` gives a flow function the signature and docstring that
:data:`PARAMS` defines, so neither is written out twice.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ace.tasks.params import FLOW_PARAMS, Param, default


def _parameter(p: Param, name: str | None = None, annotation: Any = None) -> inspect.Parameter:
    dflt = inspect.Parameter.empty if p.required else default(p.name)
    return inspect.Parameter(name or p.name, inspect.Parameter.KEYWORD_ONLY, default=dflt,
                             annotation=annotation or p.type)


def flow_signature(classes: bool = False) -> inspect.Signature:
    """The flows' parameters, in :data:`PARAMS` order. ``classes``: ``target_classes: list[str]``
    (the ``ace-classes`` flow) instead of ``target_class: str``."""
    params = []
    for p in FLOW_PARAMS:
        if classes and p.name == "target_class":
            params.append(_parameter(p, "target_classes", list[str]))
        else:
            params.append(_parameter(p))
    return inspect.Signature(params)


def run_parameters(classes: bool = False) -> Callable[[Callable], Callable]:
    """Decorate a flow function taking ``**params``: give it the run's signature and an ``Args:``
    section (Prefect shows it as each parameter's description)."""

    def decorate(fn: Callable) -> Callable:
        sig = flow_signature(classes)
        fn.__signature__ = sig.replace(return_annotation=inspect.signature(fn).return_annotation)
        fn.__annotations__ = {**{n: p.annotation for n, p in sig.parameters.items()},
                              "return": fn.__annotations__.get("return")}
        helps = {p.name: p.help for p in FLOW_PARAMS}
        helps["target_classes"] = "the classes to explain, as named in the labels file (one subflow each)"
        lines = [f"    {name}: {helps[name]}" for name in sig.parameters]
        fn.__doc__ = (inspect.cleandoc(fn.__doc__ or "") + "\n\nArgs:\n" + "\n".join(lines) + "\n")
        return fn

    return decorate


def bind(fn: Callable, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the defaults of ``fn``'s signature filled in (what a flow run received)."""
    bound = inspect.signature(fn).bind(**params)
    bound.apply_defaults()
    return dict(bound.arguments)
