from pathlib import Path

import yaml

from ace.flows.ace_flow import ace_flow

ROOT = Path(__file__).resolve().parents[2]


def test_every_scheduled_class_is_a_valid_flow_run():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    (dep,) = spec["deployments"]
    module, _, name = dep["entrypoint"].partition(":")
    assert (ROOT / module).is_file() and name == ace_flow.fn.__name__
    classes = []
    for schedule in dep["schedules"]:
        params = {**dep["parameters"], **schedule["parameters"]}
        validated = ace_flow.validate_parameters(params)
        classes.append(validated["target_class"])
        assert validated["feature_names"] == ["_blocks.10"]
    assert classes == ["zebra", "tiger", "fire engine"]
