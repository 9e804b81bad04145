"""ace explain-images on the demo world: the maps find the parts (the world's masks are the truth),
the weights rank the parts above the background, the outputs follow the contract, nothing of the
class's run is recomputed, and the page loads in headless Chromium."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run
from tests.flows.test_report_page import local_targets
from tests.flows.test_steps import _task_runs

PARTS = {"disc": 1, "square": 2}


@pytest.fixture(scope="module")
def explained(prefect_harness, demo_world, tmp_path_factory):
    """The demo class explained (12 discovery images), then its 12 scoring images and 6 random
    images explained with its concepts by the explain-images flow."""
    from ace.flows.images_flow import explain_images_flow

    kwargs = dict(target_class="disc_square", source_dir=str(demo_world), working_dir=str(tmp_path_factory.mktemp("ex")),
                  model_to_run="ace_demo_cnn", labels_path=str(demo_world / "labels.txt"), feature_names=["block3"],
                  num_random_exp=20, max_imgs=12, min_imgs=6, n_clusters=12, n_jobs=2)
    run(**kwargs)
    scoring = sorted((demo_world / "disc_square").glob("*.png"))[12:24]
    randoms = sorted((demo_world / "random500_0").glob("*.png"))[:6]
    state = explain_images_flow(target_class="disc_square", working_dir=kwargs["working_dir"],
                                images=[str(p) for p in scoring + randoms], return_state=True)
    assert state.is_completed()
    n = len(scoring) + len(randoms)
    runs = _task_runs(state.state_details.flow_run_id,
                      until=lambda names: sum(m.startswith("explain-image-") for m in names) >= n)
    return kwargs, Path(state.result()), scoring, randoms, runs


def _map(wd: Path, image: Path):
    folder = wd / "classes" / "disc_square" / "images" / "block3" / image.stem
    return np.asarray(Image.open(folder / "map.png")), json.loads((folder / "map.json").read_text())


def test_the_maps_find_the_parts(explained, demo_world):
    kwargs, _, scoring, randoms, _ = explained
    wd = Path(kwargs["working_dir"])
    ious = {part: [] for part in PARTS}
    background, ranked = [], 0
    for image in scoring:
        label, data = _map(wd, image)
        truth = np.asarray(Image.open(demo_world / "masks" / "disc_square" / image.name))
        assert label.shape == truth.shape and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, *(c["label"] for c in data["concepts"])}
        best = {}
        for part, pid in PARTS.items():
            scores = {c["label"]: ((label == c["label"]) & (truth == pid)).sum() / ((label == c["label"]) | (truth == pid)).sum()
                      for c in data["concepts"]}
            best[part] = max(scores, key=scores.get) if scores else None
            ious[part].append(max(scores.values(), default=0.0))
        raising = [c["label"] for c in data["concepts"] if c["direction"] == "raises"]
        background.append(np.isin(label[truth == 0], raising).mean())
        occlusion = {c["label"]: c["occlusion"] for c in data["concepts"]}
        others = [w for lab, w in occlusion.items() if lab not in best.values()]
        ranked += all(occlusion[best[p]] > max(others, default=-1) for p in PARTS if best[p] is not None)
    assert np.mean(ious["disc"]) >= 0.6 and np.mean(ious["square"]) >= 0.6, ious
    assert np.mean(background) <= 0.1
    assert ranked >= 0.9 * len(scoring)
    # random images hold no parts: the raising concepts cover far less of them
    cover = [np.isin(_map(wd, r)[0], [c["label"] for c in _map(wd, r)[1]["concepts"] if c["direction"] == "raises"]).mean()
             for r in randoms]
    assert np.mean(cover) < 0.05


def test_the_outputs_follow_the_contract(explained):
    kwargs, page, scoring, randoms, _ = explained
    wd = Path(kwargs["working_dir"])
    assert page == wd / "classes" / "disc_square" / "images" / "index.html"
    label, data = _map(wd, scoring[0])
    assert set(data) >= {"image", "layer", "concepts", "probability", "logit", "target_class"}
    assert data["image"] == str(scoring[0]) and data["layer"] == "block3"
    assert [c["label"] for c in data["concepts"]] == list(range(1, len(data["concepts"]) + 1))
    for c in data["concepts"]:
        assert set(c) >= {"label", "concept", "direction", "area_share", "occlusion", "gradient"}
        assert c["area_share"] == pytest.approx((label == c["label"]).mean())
        assert c["concept"].startswith("disc_square_concept") and c["direction"] in ("raises", "lowers")
    folder = wd / "classes" / "disc_square" / "images" / "block3" / scoring[0].stem
    assert {p.name for p in folder.iterdir()} == {"map.png", "map.json", "overlay.png", "weights.png"}
    assert len(list((wd / "classes" / "disc_square" / "images" / "block3").iterdir())) == len(scoring) + len(randoms)
    assert 'href="images/index.html"' in (wd / "classes" / "disc_square" / "index.html").read_text()


def test_nothing_of_the_class_run_is_recomputed(explained):
    *_, (name, runs) = explained
    assert name == "explain-images-disc_square"
    ours = ("concept-table-", "explain-image-", "images-page-")
    theirs = {n: s for n, s in runs.items() if not n.startswith(ours)}
    assert theirs and all(s == "Cached" for s in theirs.values()), theirs
    assert sum(n.startswith("explain-image-") for n in runs) == 18


def test_a_report_rerun_keeps_the_maps(explained):
    kwargs, page, *_ = explained
    run(**{**kwargs, "alpha": 0.02})  # another report of the class: the folder is replaced
    assert page.is_file() and 'href="images/index.html"' in page.parent.parent.joinpath("index.html").read_text()


@pytest.mark.slow
def test_the_images_page_loads_in_chromium(explained):
    from tests.browser import load_page

    _, page, scoring, randoms, _ = explained
    r = load_page(page.as_uri())
    assert r.errors == [] and r.broken == [], (r.errors, r.broken)
    assert r.images == 2 * (len(scoring) + len(randoms))  # an overlay and a weight chart each
    assert all(p.exists() for p in local_targets(r.links)), r.links


def test_a_class_never_explained_is_one_line(tmp_path, capsys):
    from ace.flows.cli import main

    assert main(["explain-images", "--working_dir", str(tmp_path), "--target_class", "zebra", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ace: error: no report of class 'zebra'"), err
