import numpy as np

from ace.tasks.report.html import ConceptView, class_page, index_page, tcav_chart
from ace.tasks.algorithm.patches import highlight
from ace.tasks.report.info import RunInfo
from ace.tasks.algorithm.stats import ConceptScore


def score(name, mean, significant, direction, layer="l"):
    return ConceptScore(layer, name, mean, 0.05, 0.001 if significant else 0.4, 0.001, 0.9, significant,
                        (mean,) * 3, direction, mean - 0.5, (mean - 0.6, mean - 0.4))


RUN = RunInfo("zebra <b>", 340, "m", ("l",), 20, 50, 50, 0.01, "none", 0.98, "two-sided", (("seed", "0"),))


def test_class_page_orders_and_escapes():
    scores = [score("grass", 0.2, True, "lowers"), score("stripes", 0.9, True, "raises"),
              score("sky", 0.7, True, "raises"), score("noise", 0.5, False, "raises")]
    views = [ConceptView(s, 10, 5, ("concepts/l_c/superpixels/000_001.png",), ("concepts/l_c/where/000_001.png",))
             for s in scores if s.significant]
    page = class_page(RUN, scores, {"l": (0.5, 0.1, 0.8)}, views, {"l": "results/l.png"})
    assert "zebra <b>" not in page and "zebra &lt;b&gt;" in page  # names are escaped
    i = {n: page.index(f">{n} <span") for n in ("stripes", "sky", "grass")}
    assert i["stripes"] < i["sky"] < i["grass"]  # raising first, highest TCAV first; then lowering
    assert page.index("Concepts that raise") < i["stripes"] and page.index("Concepts that lower") < i["grass"]
    assert '<span class="badge raises">raises</span>' in page and '<span class="badge lowers">lowers</span>' in page
    assert "+0.400 [+0.300, +0.500]" in page  # stripes' effect and CI
    assert ">noise</td>" in page  # the non-significant concept is in the table, without images
    assert page.count("<img ") == 6 and "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


def test_chart_marks_baseline_and_direction():
    svg = tcav_chart("l", [score("a", 0.9, True, "raises"), score("b", 0.1, True, "lowers"),
                           score("c", 0.5, False, "raises")], (0.5, 0.1, 0.8))
    assert svg.count("<rect") == 4  # three concepts and the baseline
    assert "#1a7f37" in svg and "#cf222e" in svg and "random 0.50" in svg
    assert svg.index(">a<") < svg.index(">c<") < svg.index(">b<")  # highest first


def test_index_page_links_done_classes_only():
    page = index_page([{"target_class": "zebra", "status": "done", "concepts_kept": "3/9", "top_concept": "c1",
                        "page": "classes/zebra/index.html"},
                       {"target_class": "tiger", "status": "failed", "concepts_kept": "", "top_concept": "", "page": ""}])
    assert page.count("<a href") == 1 and 'href="classes/zebra/index.html"' in page and "tiger" in page


def test_highlight_dims_outside_and_outlines():
    img = np.full((40, 40, 3), 200, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    out = highlight(img, mask)
    assert (out[mask] == 200).all()  # the superpixel itself is untouched
    assert tuple(out[0, 0]) == (60, 60, 60)  # the rest dimmed to 30%
    assert tuple(out[9, 15]) == (255, 214, 0) and tuple(out[8, 15]) == (255, 214, 0)  # a 2-pixel outline
    assert tuple(out[7, 15]) == (60, 60, 60)


def _highlight_reference(image, mask, colour=(255, 214, 0)):
    """The dense version: every pixel dimmed by boolean indexing, the whole mask dilated."""
    from scipy.ndimage import binary_dilation

    out = image.copy()
    out[~mask] = (image[~mask].astype(np.uint16) * 3 // 10).astype(np.uint8)
    width = max(2, round(max(mask.shape) / 80))
    out[binary_dilation(mask, iterations=width) & ~mask] = colour
    return out


def test_highlight_equals_the_dense_reference_at_edges_and_for_odd_shapes():
    from scipy.ndimage import binary_opening

    rng = np.random.default_rng(3)
    for shape in [(224, 224), (90, 160), (17, 5)]:
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        for _ in range(6):
            mask = binary_opening(rng.random(shape) > 0.6) | (rng.random(shape) > 0.995)
            mask[: rng.integers(0, 3)] = True  # touching the top edge, sometimes
            assert np.array_equal(highlight(img, mask), _highlight_reference(img, mask))
        empty = np.zeros(shape, bool)
        assert np.array_equal(highlight(img, empty), _highlight_reference(img, empty))
