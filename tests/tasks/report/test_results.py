"""ACEResult: read from a finished report, saved and loaded, shown as a figure and in a notebook."""

import json

import numpy as np
import pytest


def test_a_result_holds_the_report(demo_run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from ace.tasks.report.results import ACEResult

    kwargs, summary = demo_run
    result = ACEResult.load(kwargs["working_dir"], "disc_square")
    data = json.loads(summary.with_suffix(".json").read_text())
    assert len(result.concepts) == len(data["concepts"]) and result.target_class == "disc_square"
    assert result.significant and all(c.significant for c in result.significant)
    assert [c.name for c in result.concepts[:len(result.significant)]] == [c.name for c in result.significant]
    top = result.raising[0]
    raw = next(c for c in data["concepts"] if c["concept"] == top.name)
    assert (top.tcav_mean, top.p_value, top.scores) == (raw["tcav_mean"], raw["p_value"], tuple(raw["scores"]))
    assert list(top.examples) == data["concept_examples"][f"block3:{top.name}"]
    assert len(top.example_paths()) == len(top.examples)
    imgs = top.example_images(n=3)
    assert imgs.shape == (3, 64, 64, 3) and imgs.dtype == np.uint8 and imgs.std() > 0
    assert result.random_baseline["block3"][0] == pytest.approx(data["random_discovery"]["block3"][0])
    assert result.concept(top.name) is top
    with pytest.raises(KeyError):
        result.concept("no_such_concept")

    path = result.save(tmp_path / "r.json")
    assert ACEResult.from_json(path) == result

    fig = result.show_concept(top.name, n=4)
    assert len([ax for ax in fig.axes if ax.images]) == 8  # 4 superpixels, 4 in their images
    html = result._repr_html_()
    assert html.count("data:image/png;base64,") == 5 * len(result.significant)
    assert all(c.name in html for c in result.concepts) and "index.html" in html
    assert "disc_square" in repr(result)
