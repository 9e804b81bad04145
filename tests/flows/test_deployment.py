"""The deployments of deployments/prefect.yaml: valid offline, and run for real (``-m e2e``) the way
the yaml's header says: a real server, a process work pool, ``prefect deploy``, a worker,
``prefect deployment run``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ace.flows.ace_flow import ace_flow
from ace.flows.classes import ace_classes_flow
from tests.conftest import stop

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_every_deployment_and_schedule_is_a_valid_flow_run():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    flows = {"ace.flows.ace_flow.ace_flow": ace_flow, "ace.flows.classes.ace_classes_flow": ace_classes_flow}
    env = {"ACE_SOURCE_DIR": "/data/src", "ACE_WORKING_DIR": "/data/work"}
    seen = {}
    for dep in spec["deployments"]:
        flow = flows[dep["entrypoint"]]
        base = {k: env[v.strip("{} $")] if isinstance(v, str) and "{{" in v else v for k, v in dep["parameters"].items()}
        for schedule in dep["schedules"]:
            validated = flow.validate_parameters({**base, **schedule.get("parameters", {})})
            assert validated["feature_names"] == ["_blocks.10"] and validated["working_dir"] == "/data/work"
            seen.setdefault(dep["name"], []).append(validated.get("target_class") or validated["target_classes"])
    assert seen == {"class-by-class": ["zebra", "tiger", "fire engine"],
                    "all-classes": [["zebra", "tiger", "fire engine"]]}


def prefect(*args, env, timeout=300, check=True):
    out = subprocess.run([str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT)
    if check:
        assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.e2e
def test_deployments_run_on_a_worker_as_the_yaml_header_says(prefect_server, demo_world, tmp_path):
    env = {**prefect_server, "ACE_SOURCE_DIR": str(demo_world), "ACE_WORKING_DIR": str(tmp_path / "work"),
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    prefect("work-pool", "create", "ace-pool", "--type", "process", env=env)
    prefect("--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all", env=env)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "ace-pool"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    demo = ["--param", "model_to_run=ace_demo_cnn", "--param", f"labels_path={demo_world / 'labels.txt'}",
            "--param", 'feature_names=["block3"]', "--param", "num_random_exp=4", "--param", "max_imgs=8",
            "--param", "min_imgs=4", "--param", "n_clusters=6"]
    try:
        one = prefect("deployment", "run", "ace/class-by-class", "--param", "target_class=disc_square", *demo,
                      "--watch", "--watch-timeout", "400", env=env, timeout=420, check=False)
        many = prefect("deployment", "run", "ace-classes/all-classes", "--param",
                       'target_classes=["triangle_stripes", "disc_stripes"]', *demo,
                       "--watch", "--watch-timeout", "400", env=env, timeout=420, check=False)
    finally:
        stop(worker)
        log.close()
    worker_log = (tmp_path / "worker.log").read_text()[-4000:]
    assert one.returncode == 0 and "Completed" in one.stdout, one.stdout[-2000:] + worker_log
    assert many.returncode == 0 and "Completed" in many.stdout, many.stdout[-2000:] + worker_log
    work = tmp_path / "work"
    for cls in ("disc_square", "triangle_stripes", "disc_stripes"):
        data = json.loads((work / "classes" / cls / "results_summaries" / "ace_results.json").read_text())
        assert data["run"]["target_class"] == cls and data["run"]["num_random_exp"] == 4
    assert (work / "results_summaries" / "ace_results.txt").is_symlink()
