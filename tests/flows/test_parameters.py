"""One definition of every parameter: the CLI, both flows' signatures (and Prefect's schema), the
estimator and docs/flags.md all agree with ace.tasks.params.PARAMS."""

import argparse
import inspect
from pathlib import Path

import pytest

from ace.flows.cli import build_parser, run_kwargs
from ace.tasks.params import FLOW_PARAMS, PARAMS, REQUIRED, default, flag_table

ROOT = Path(__file__).resolve().parents[2]


def _actions(sub: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[sub]
    return {a.dest: a for a in run._actions if a.dest != "help"}


def test_the_cli_options_are_the_parameters():
    actions = _actions("run")
    assert set(actions) == {p.name for p in PARAMS}
    for p in PARAMS:
        a = actions[p.name]
        assert f"--{p.name}" in a.option_strings and f"--{p.name.replace('_', '-')}" in a.option_strings
        for alias in p.aliases:
            assert f"--{alias}" in a.option_strings
        assert a.required == p.required, p.name
        if not p.required:
            assert a.default == default(p.name), p.name
        assert tuple(a.choices or ()) == (p.choices or ()), p.name
        assert (a.nargs == "+") == p.many, p.name
        assert a.help == p.help


@pytest.mark.parametrize("entry, classes", [("ace_flow", False), ("ace_classes_flow", True)])
def test_both_flows_take_the_parameters(entry, classes):
    from prefect.utilities.callables import parameter_schema

    import ace.flows.ace_flow
    import ace.flows.classes

    flow = getattr(ace.flows.ace_flow, "ace_flow", None) if not classes else ace.flows.classes.ace_classes_flow
    sig = inspect.signature(flow.fn)
    expected = [("target_classes" if classes and p.name == "target_class" else p.name) for p in FLOW_PARAMS]
    assert list(sig.parameters) == expected
    schema = parameter_schema(flow).model_dump_for_openapi()
    for p in FLOW_PARAMS:
        name = "target_classes" if classes and p.name == "target_class" else p.name
        param = sig.parameters[name]
        assert (param.default is inspect.Parameter.empty) == (p.default is REQUIRED)
        if not p.required:
            assert param.default == default(p.name) == schema["properties"][name]["default"]
        else:
            assert name in schema["required"]
        assert p.help in flow.fn.__doc__ or name == "target_classes"
    assert schema["properties"]["feature_names"]["type"] == "array"


def test_the_cli_passes_every_flow_parameter():
    args = build_parser().parse_args(["run", "--source_dir", "s", "--working_dir", "w", "--target_class", "zebra",
                                      "--feature_names", "a,b", "c", "--n-clusters", "7", "--stat_testing_filter",
                                      "false", "--evaluate"])
    kwargs = run_kwargs(args)
    assert set(kwargs) == {p.name for p in FLOW_PARAMS}
    assert kwargs["feature_names"] == ["a", "b", "c"] and kwargs["n_clusters"] == 7
    assert kwargs["stat_testing_filter"] is False and kwargs["evaluate"] is True
    assert kwargs["cav_solver"] == default("cav_solver") == "exact"


def test_the_flag_reference_is_generated_from_the_definition():
    text = (ROOT / "docs" / "flags.md").read_text()
    assert flag_table() in text, "docs/flags.md is stale: paste ace.tasks.params.flag_table() into it"
    for p in PARAMS:
        assert f"`--{p.name}`" in text


def test_step_functions_default_to_the_run_parameters():
    """Where a step function has a default for a run parameter, it is the run's default."""
    from ace.tasks.algorithm import cav, cluster, stats, superpixels
    from ace.tasks.models import loader

    pairs = [(cluster.cluster_embeddings, {"method": "clustering_method", "n_clusters": "n_clusters", "seed": "seed"}),
             (cav.train_cav, {"seed": "seed", "solver": "cav_solver"}), (cav.fit_in_span, {"solver": "cav_solver"}),
             (stats.significance, {"alpha": "alpha", "correction": "correction", "test": "test"}),
             (stats.adjust_p_values, {"method": "correction"}), (stats.paired_p_value, {"test": "test"}),
             (superpixels.superpixel_masks, {"method": "superpixel_method"}),
             (loader.resolve, {"precision": "precision", "layout": "layout"})]
    for fn, names in pairs:
        sig = inspect.signature(fn)
        for arg, param in names.items():
            assert sig.parameters[arg].default == default(param), (fn.__name__, arg)


def test_the_estimator_takes_the_parameters_by_name():
    from ace import ACE

    est = ACE(model="ace_demo_cnn", layers="block3", n_clusters=4, embedding="pooled")
    assert est.get_params() == {"model_to_run": "ace_demo_cnn", "feature_names": ["block3"], "n_clusters": 4,
                                "embedding": "pooled"}
    with pytest.raises(TypeError, match="n_cluster"):
        ACE(n_cluster=4)
