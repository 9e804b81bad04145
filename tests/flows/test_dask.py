"""Mapped tasks on a Dask cluster of real worker processes give the same results as a local run,
for every class of a multi-class command."""

import json
import os
import subprocess

import pytest

from tests.flows.test_crash import command, concepts


@pytest.mark.e2e
def test_dask_worker_processes_give_the_local_results(demo_run, prefect_server, tmp_path, monkeypatch):
    pytest.importorskip("prefect_dask", reason="the 'dask' extra is not installed")
    from distributed import LocalCluster

    kwargs, summary = demo_run
    for k, v in prefect_server.items():  # the worker processes talk to the same server
        monkeypatch.setenv(k, v)
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        from distributed import Client

        with Client(cluster) as client:  # two worker processes, none of them this one
            pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        argv = command(kwargs, tmp_path)
        argv[argv.index("--target_class") + 1:argv.index("--target_class") + 2] = ["disc_square", "triangle_stripes"]
        out = subprocess.run(argv + ["--dask_address", cluster.scheduler_address],
                             env=prefect_server, capture_output=True, text=True, timeout=600)
        with Client(cluster) as client:
            executed = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert out.returncode == 0, out.stderr[-3000:]
    # submitted per class: the embedding of random_discovery, of every random set and of the
    # superpixels, and the CAV task of every random set; both classes' ran on the workers
    n = kwargs["num_random_exp"]
    assert executed >= 2 * (2 * n + 2), executed
    assert concepts(tmp_path, "triangle_stripes")
    assert "Traceback" not in out.stderr
    assert concepts(tmp_path) == concepts(summary.parents[3])
    ref = json.loads((summary.parent / "ace_results.json").read_text())["run"]
    assert json.loads((tmp_path / "classes" / "disc_square" / "results_summaries" / "ace_results.json")
                      .read_text())["run"] == ref
