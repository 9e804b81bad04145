"""End-to-end runs of the Prefect flow: the demo world (always) and real photos (when present)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import forbid, run


def test_demo_flow_writes_every_output(demo_run):
    kwargs, summary = demo_run
    wd = Path(kwargs["working_dir"])
    cd = wd / "classes" / "disc_square"
    assert summary == cd / "results_summaries" / "ace_results.txt"
    # the original script's users find the summary where it was (a link to the first class's)
    assert (wd / "results_summaries" / "ace_results.txt").read_text() == summary.read_text()
    text = summary.read_text()
    assert "CAV accuracies:" in text and "Mean TCAV scores (mean,std,p-value):" in text
    data = json.loads((cd / "results_summaries" / "ace_results.json").read_text())
    assert data["run"]["target_class"] == "disc_square"
    kept = [c for c in data["concepts"] if c["significant"]]
    assert kept, text
    assert {p.name for p in (cd / "concepts").iterdir()} == {"images"} | {f"block3_{c['concept']}" for c in kept}
    for c in kept:
        assert f"block3:{c['concept']}:{c['tcav_mean']:.4f},{c['tcav_std']:.4f}," in text
        assert f"block3:{c['concept']}:{c['cav_accuracy']:.4f}" in text
        assert c["p_value"] <= 0.01 and len(c["scores"]) == 20 and 0 <= c["tcav_mean"] <= 1
        assert c["concept"].startswith("disc_square_concept")
        assert len(list((cd / "concepts" / f"block3_{c['concept']}" / "superpixels").glob("*.png"))) >= 6
        assert len(list((cd / "concepts" / f"block3_{c['concept']}" / "patches").glob("*.png"))) >= 6
    assert len(list((cd / "concepts" / "images").glob("*.png"))) == 12
    assert len(list((wd / "cavs" / "block3").glob("random500_*.npz"))) == 20
    cav = np.load(next((wd / "cavs" / "block3").glob("random500_0-*.npz")))
    assert cav["cavs"].shape[0] == len(data["concepts"]) + 1
    np.testing.assert_allclose(np.linalg.norm(cav["cavs"], axis=1), 1, atol=1e-5)
    assert (cd / "results" / "block3.png").stat().st_size > 10_000
    assert data["run"]["scoring_accuracy"] >= 0.9  # the demo CNN knows its class


def test_demo_concepts_are_the_class_parts(demo_run, demo_world):
    """The ground truth: disc_square images are a red disc and a blue square on a texture. The most
    significant concepts' superpixels must lie on those parts, not on the background."""
    from ace.tasks.algorithm.cluster import read_concepts
    from ace.tasks.algorithm.superpixels import read_masks

    kwargs, _ = demo_run
    wd = Path(kwargs["working_dir"])
    data = json.loads((wd / "classes" / "disc_square" / "results_summaries" / "ace_results.json").read_text())
    kept = {c["concept"] for c in data["concepts"] if c["significant"]}
    files = sorted((demo_world / "disc_square").glob("*.png"))[:12]
    gt = np.stack([np.asarray(Image.open(demo_world / "masks" / "disc_square" / f.name)) for f in files])
    (concepts_path,) = (wd / "cache" / "concepts" / "block3").glob("*.json")
    (segments_path,) = (wd / "cache" / "segments").glob("*.parquet")
    on_part = {}
    for c in read_concepts(str(concepts_path)):
        masks, idx = read_masks(str(segments_path), list(c.examples))
        share = [(gt[i][m] > 0).mean() for m, i in zip(masks, idx)]
        on_part[c.name] = float(np.mean(np.array(share) > 0.5))
    best = max(kept, key=lambda n: on_part[n])
    assert on_part[best] >= 0.8, on_part
    # and at least half of the significant concepts are mostly part pixels
    assert np.mean([on_part[n] >= 0.5 for n in kept]) >= 0.5, (kept, on_part)


def test_second_run_executes_no_task_body(demo_run, monkeypatch):
    kwargs, summary = demo_run
    before = summary.read_text()
    forbid(monkeypatch)
    assert Path(run(**kwargs)) == summary
    assert summary.read_text() == before


def test_fewer_random_sets_reuse_every_activation(demo_run, monkeypatch):
    kwargs, summary = demo_run
    calls = forbid(monkeypatch, allowed=("scan_source", "significance", "write_report"))
    run(**{**kwargs, "num_random_exp": 15})
    assert sorted(set(calls)) == ["scan_source", "significance", "write_report"]
    assert "15 random sets" in summary.read_text()
    run(**kwargs)  # back to 20: everything cached again, the report rewritten
    assert "20 random sets" in summary.read_text()


def test_a_deleted_cache_file_is_recomputed_not_dangling(demo_run, monkeypatch):
    kwargs, _ = demo_run
    (segments_path,) = (Path(kwargs["working_dir"]) / "cache" / "segments").glob("*.parquet")
    segments_path.unlink()
    calls = forbid(monkeypatch, allowed=("write_segments",))
    run(**kwargs)
    assert calls == ["write_segments"] and segments_path.exists()


def test_a_deleted_report_folder_is_written_again(demo_run, monkeypatch):
    import shutil

    kwargs, summary = demo_run
    before = summary.read_text()
    folder = summary.parent.parent
    pages = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    calls = forbid(monkeypatch, allowed=("write_report",))
    assert Path(run(**kwargs)) == summary
    assert calls == ["write_report"]  # only the report: every computed result is reused
    assert summary.read_text() == before
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) == pages


def test_bad_layer_fails_with_close_matches(demo_run):
    from ace.tasks.errors import ACEInputError

    kwargs, _ = demo_run
    with pytest.raises(ACEInputError, match="block3"):
        run(**{**kwargs, "feature_names": ["blok3"]})


def test_real_photos_efficientnet_lite0(zebra_run):
    wd, summary = zebra_run
    data = json.loads((wd / "classes" / "zebra" / "results_summaries" / "ace_results.json").read_text())
    assert data["run"]["class_index"] == 340 and data["run"]["n_discovery"] == 10
    assert data["run"]["scoring_accuracy"] >= 0.8  # EfficientNet-Lite0 knows zebras
    assert data["concepts"], summary.read_text()
    for c in data["concepts"]:
        assert len(c["scores"]) == 3 and all(0 <= s <= 1 for s in c["scores"]) and 0.5 <= c["cav_accuracy"] <= 1
        assert c["direction"] == ("raises" if c["effect"] > 0 else "lowers" if c["effect"] < 0 else "neither")
    assert "Mean TCAV scores" in summary.read_text()


def test_flow_parameters_are_checked_as_the_cli_checks_them(demo_run):
    """Deployment runs call the flow directly: they get the CLI's checks."""
    from ace.tasks.errors import ACEInputError

    kwargs, _ = demo_run
    for bad, match in (({"max_imgs": 0}, "--max_imgs"), ({"alpha": 2.0}, "--alpha"), ({"embedding": "x"}, "--embedding"),
                       ({"layout": "nwhc"}, "--layout"), ({"source_dir": "{{ $ACE_SOURCE_DIR }}"}, "template")):
        with pytest.raises(ACEInputError, match=match):
            run(**{**kwargs, **bad})


def test_pooled_embedding_mode(demo_run, tmp_path):
    from ace.storage.tables import ArrayTable

    kwargs, _ = demo_run
    out = Path(run(**{**kwargs, "working_dir": str(tmp_path), "embedding": "pooled"}))
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["concepts"] and all(c["direction"] in ("raises", "lowers", "neither") for c in data["concepts"])
    shapes = {ArrayTable(p).shape("act") for p in (tmp_path / "acts" / "block3").glob("*.parquet")}
    assert shapes == {(64,)}  # every embedding, random sets' and concepts' alike, is the 64 channels of block3
    (grads,) = (tmp_path / "acts" / "grads" / "block3").glob("*.parquet")
    assert ArrayTable(grads).shape("grad") == (64,)
    # block3 feeds the demo CNN's global pooling and linear head: the pooled gradient is the same
    # for every image, so every CAV scores 0 or 1 there (the run warns; README, "Speed and memory")
    assert all(c["tcav_std"] == 0 for c in data["concepts"])


@pytest.mark.slow
def test_swin_run_clusters_channel_embeddings(prefect_harness, demo_world, tmp_path):
    """A whole run with a channels-last model (swin_t, random weights): the cluster step gets 384-dim
    embeddings, one per superpixel, and the report names the layout."""
    import torch
    import torchvision

    from ace.storage.tables import ArrayTable

    torch.manual_seed(0)
    torch.save(torchvision.models.swin_t().state_dict(), tmp_path / "swin_t.pt")
    wd = tmp_path / "wd"
    run(target_class="disc_square", source_dir=str(demo_world), working_dir=str(wd), model_to_run="swin_t",
        model_path=str(tmp_path / "swin_t.pt"), labels_path=str(demo_world / "labels.txt"), feature_names=["features.5"],
        num_random_exp=2, max_imgs=6, min_imgs=2, n_clusters=5, embedding="pooled", n_jobs=2)
    clusters = list((wd / "cache" / "clusters" / "features.5").glob("*.parquet"))
    n_superpixels = len(ArrayTable(str(next((wd / "cache" / "segments").glob("*.parquet")))).read("image_index"))
    tables = [ArrayTable(str(p)) for p in (wd / "acts" / "features.5").glob("*.parquet")]
    shapes = [(len(t), *t.shape("mean")) for t in tables if len(t)]
    assert len(clusters) == 1 and (n_superpixels, 384) in shapes  # the superpixels' embeddings
    assert len(shapes) >= 4 and all(s[1:] == (384,) for s in shapes)  # and every random set's
    page = (wd / "classes" / "disc_square" / "index.html").read_text()
    assert "features.5: nhwc" in page
    from ace.tasks.models.backends import openvino_available

    if openvino_available():  # converted: its tracer warns (padding from the shapes), the trace checks out
        compiled = wd / "cache" / "compiled"
        assert list(compiled.glob("*.xml")) and not list(compiled.glob("*.failed"))


def test_the_docs_tree_names_what_a_run_writes(demo_run):
    """Every folder and file a run leaves at the top two levels of the working dir is in
    docs/working-dir.md's tree."""
    kwargs, _ = demo_run
    root = Path(__file__).resolve().parents[2]
    tree = (root / "docs" / "working-dir.md").read_text().split("```\nSAVE_DIR/", 1)[1].split("```", 1)[0]
    wd = Path(kwargs["working_dir"])
    for p in wd.iterdir():
        assert p.name in tree, p.name
        if p.is_dir() and p.name in ("cache", "acts", "results_summaries"):
            for q in p.iterdir():
                if q.name in ("grads",) or q.is_dir() and p.name == "acts":
                    continue  # acts/<layer>/
                assert f"{p.name}/{q.name}" in tree, f"{p.name}/{q.name}"
