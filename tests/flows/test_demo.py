"""`ace demo` as a user runs it: the report carries the ground truth of the demo world's parts and
the SSC/SDC evaluation, and its HTML page loads cleanly in headless Chromium."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests.flows.test_report_page import check_class_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ace_demo(prefect_harness, tmp_path_factory):
    from ace.flows.cli import main

    wd = tmp_path_factory.mktemp("ace_demo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--working_dir", str(wd)]) == 0
    report = json.loads((wd / "classes" / "disc_square" / "results_summaries" / "ace_results.json").read_text())
    return wd, out.getvalue(), report


def test_demo_finds_both_parts_and_no_background_concept(ace_demo):
    _, printed, report = ace_demo
    gt = report["ground_truth"]
    assert set(gt["parts"]) == {"disc", "square"}
    for part in ("disc", "square"):
        assert gt["parts"][part]["purity"] >= 0.8 and gt["parts"][part]["recall"] > 0.2, gt
    assert gt["background_significant"] == 0
    assert "Ground truth" in printed and "significant concepts mostly on the background: 0" in printed


def test_demo_ssc_sdc_beat_random_superpixels(ace_demo):
    wd, printed, report = ace_demo
    ev = report["evaluation"]
    assert json.loads((wd / "classes" / "disc_square" / "results_summaries" / "evaluation.json").read_text()) == ev
    assert ev["original"]["accuracy"] >= 0.9 and len(ev["ssc"]) >= 2
    for ssc, sdc, ssc_r, sdc_r in zip(ev["ssc"], ev["sdc"], ev["ssc_random"], ev["sdc_random"]):
        # keeping the concepts keeps the class more than keeping as many random superpixels; removing them
        # destroys it more than removing random ones
        assert ssc["probability"] > ssc_r["probability"] and sdc["probability"] < sdc_r["probability"], ev
    # the top two concepts (the disc and the square) are sufficient, and removing them destroys the class
    assert ev["ssc"][1]["accuracy"] >= 0.8 and ev["sdc"][1]["accuracy"] <= 0.2, ev
    assert ev["ssc"][1]["accuracy"] > ev["ssc_random"][1]["accuracy"] and ev["sdc"][1]["accuracy"] < ev["sdc_random"][1]["accuracy"]
    assert [s["k"] for s in ev["ssc"]] == list(range(1, len(ev["ssc"]) + 1))
    assert "SSC/SDC on 40 scoring images" in printed


def test_demo_page_in_chromium(ace_demo):
    wd, _, _ = ace_demo
    check_class_page(wd, "disc_square", charts=5)  # the TCAV chart, two SSC/SDC charts, deletion and insertion
    html = (wd / "classes" / "disc_square" / "index.html").read_text()
    assert "<h2>Ground truth</h2>" in html and "SSC / SDC" in html and "How much the concepts explain" in html


def test_demo_concepts_are_complete_and_their_order_faithful(ace_demo):
    """The disc and the square explain the whole decision (completeness >= 0.9); either alone far less;
    removing concepts by their weight in each image loses the class faster than in random order."""
    _, printed, report = ace_demo
    completeness = report["completeness"]["block3"]
    assert completeness >= 0.9, completeness
    fid = report["evaluation"]["fidelity"]
    assert len(fid["concepts"]) == 2 and max(fid["completeness_without"]) < completeness - 0.4, fid
    deletion, insertion = report["fidelity"]["block3"]["deletion"], report["fidelity"]["block3"]["insertion"]
    assert set(deletion) == set(insertion) == {"tcav", "image", "random"}
    assert deletion["image"]["aopc"] > deletion["random"]["aopc"]
    for order in deletion:
        d, i = deletion[order]["curve"], insertion[order]["curve"]
        assert len(d) == len(i) == 3 and d[0] >= 0.9 and d[-1] <= 0.1 and i[0] <= 0.1 and i[-1] >= 0.9
    assert "Completeness of the 2 significant concepts" in printed


def test_demo_report_shows_where_each_concept_fires(ace_demo):
    """Both parts' concepts fire in (nearly) every scoring image, on about the share of the image a part covers."""
    wd, _, report = ace_demo
    where = report["where"]
    assert where["layer"] == "block3" and where["n_images"] == 40 and len(where["images"]) == 12
    assert {c["concept"] for c in where["concepts"]} == set(report["evaluation"]["fidelity"]["concepts"])
    for c in where["concepts"]:
        assert c["direction"] == "raises" and c["images"] >= 36 and 0.02 <= c["pixel_share"] <= 0.15, where
    for rel in where["images"]:
        assert (wd / "classes" / "disc_square" / rel).stat().st_size > 0
    text = (wd / "classes" / "disc_square" / "results_summaries" / "ace_results.txt").read_text()
    assert "Where each concept fires in the 40 scoring images (layer block3)" in text
    assert "<h2>Where each concept fires</h2>" in (wd / "classes" / "disc_square" / "index.html").read_text()
    assert "where" not in report["evaluation"]  # the per-superpixel assignment stays in the cache


def test_the_backends_find_the_same_concepts(ace_demo):
    """With OpenVINO installed `ace demo` ran its passes there (auto); PyTorch finds the same parts."""
    from ace.flows.cli import demo_kwargs
    from ace.tasks.models.backends import openvino_available
    from tests.conftest import run

    wd, _, report = ace_demo
    if not openvino_available():
        pytest.skip("the openvino package is not installed: the demo ran in PyTorch")
    assert (wd / "cache" / "compiled").is_dir() and list((wd / "cache" / "compiled").glob("*.xml"))
    summary = Path(run(**{**demo_kwargs(str(wd)), "backend": "torch"}))
    torch_run = json.loads(summary.with_suffix(".json").read_text())
    for r in (report, torch_run):
        gt = r["ground_truth"]
        assert gt["background_significant"] == 0 and all(gt["parts"][p]["purity"] >= 0.8 for p in ("disc", "square"))
    assert [c["significant"] for c in torch_run["concepts"]] == [c["significant"] for c in report["concepts"]]
    assert torch_run["parameters"]["backend"] == "torch"


def test_evaluate_needs_a_finished_report(tmp_path, capsys):
    from ace.flows.cli import main

    assert main(["evaluate", "--working_dir", str(tmp_path), "--target_class", "zebra"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ace: error: no report of class 'zebra'")


def test_a_later_run_without_evaluate_keeps_the_evaluation(ace_demo):
    """The nightly run of a class (no --evaluate) does not drop an evaluation of the same concepts."""
    from ace.flows.cli import demo_kwargs
    from tests.conftest import run

    wd, _, report = ace_demo
    summary = Path(run(**{**demo_kwargs(str(wd)), "evaluate": False}))
    again = json.loads(summary.with_suffix(".json").read_text())
    assert again["parameters"]["evaluate"] is False and again["evaluation"] == report["evaluation"]
    assert again["where"] == report["where"]
    assert again["concepts"] == report["concepts"]
