import numpy as np
import pytest
from scipy import stats as sps

from ace.tasks.algorithm.cav import RandomSetScores
from ace.tasks.algorithm.stats import adjust_p_values, paired_p_value, random_baseline, significance


def test_adjustments_golden_numbers():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjust_p_values(p, "none"), p)
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_p_values(p, "fdr_bh"), [0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError):
        adjust_p_values(p, "sidak")


def test_paired_p_value():
    a, b = np.array([0.9, 0.8, 0.95, 0.85]), np.array([0.5, 0.4, 0.6, 0.3])
    assert paired_p_value(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert paired_p_value(a, a) == 1.0  # not NaN
    assert paired_p_value(a, a - 0.1) == 0.0  # a constant shift: no variance, certainly different


def _results(concept_scores, random_scores, acc=0.9):
    return [RandomSetScores("l", f"random500_{i}", {"l_concept1": c, "random_discovery": r},
                            {"l_concept1": acc, "random_discovery": 0.5}, "x")
            for i, (c, r) in enumerate(zip(concept_scores, random_scores))]


def test_significance_keeps_different_and_drops_random_like():
    rs = _results([0.9, 0.95, 0.85, 1.0, 0.92], [0.5, 0.3, 0.6, 0.45, 0.55])
    (row,) = significance(rs, alpha=0.01)
    assert row.concept == "l_concept1" and row.significant
    assert row.tcav_mean == pytest.approx(0.924) and row.cav_accuracy == pytest.approx(0.9)
    assert row.p_value == pytest.approx(sps.ttest_rel(row.scores, [0.5, 0.3, 0.6, 0.45, 0.55]).pvalue)
    (row,) = significance(_results([0.5, 0.35, 0.6, 0.4, 0.5], [0.5, 0.3, 0.6, 0.45, 0.55]), alpha=0.01)
    assert not row.significant
    m, sd, acc = random_baseline(rs, "l")
    assert m == pytest.approx(0.48) and acc == 0.5


def test_summary_text_lists_kept_concepts_best_first_with_both_sections():
    from ace.tasks.report.info import RunInfo
    from ace.tasks.report.writer import summary_text
    from ace.tasks.algorithm.stats import ConceptScore

    info = RunInfo("zebra", 340, "m", ("l",), 3, 50, 50, 0.01, "none", 0.98)
    rows = [ConceptScore("l", "l_concept1", 0.3, 0.1, 1e-4, 1e-4, 0.95, True, (0.2, 0.3, 0.4), "lowers", -0.2),
            ConceptScore("l", "l_concept2", 0.8, 0.05, 1e-5, 1e-5, 0.99, True, (0.75, 0.8, 0.85), "raises", 0.3),
            ConceptScore("l", "l_concept4", 0.6, 0.05, 1e-3, 1e-3, 0.97, True, (0.55, 0.6, 0.65), "raises", 0.1),
            ConceptScore("l", "l_concept3", 0.5, 0.2, 0.5, 0.5, 0.9, False, (0.3, 0.5, 0.7), "neither", 0.0)]
    text = summary_text(info, rows, {"l": (0.5, 0.1, 0.55)})
    lines = text.splitlines()
    # the raising concepts first, under their heading, in the original's two sections
    i = lines.index("Concepts that raise the class, highest TCAV first:")
    assert lines[i + 1:i + 7] == ["CAV accuracies:", "l:l_concept2:0.9900", "l:l_concept4:0.9700",
                                  "Mean TCAV scores (mean,std,p-value):", "l:l_concept2:0.8000,0.0500,1e-05",
                                  "l:l_concept4:0.6000,0.0500,0.001"]
    j = lines.index("Concepts that lower the class, lowest TCAV first:")
    assert j > i and lines[j + 1:j + 5] == ["CAV accuracies:", "l:l_concept1:0.9500",
                                            "Mean TCAV scores (mean,std,p-value):", "l:l_concept1:0.3000,0.1000,0.0001"]
    assert lines.index("CAV accuracies:") == i + 1  # an old parser reading the first section gets the raising ones
    assert "l:random_discovery:0.5000,0.1000,0.5500" in lines
    assert lines[-1] == "l:l_concept3:0.5000,0.2000,0.5,0.9000"
    assert "# 3 of 4 concepts kept: 2 raise the class" in text and "98%" in text


def test_direction_effect_and_one_sided_test():
    up = significance(_results([0.9, 0.95, 0.85, 1.0, 0.92], [0.5, 0.3, 0.6, 0.45, 0.55]))[0]
    down = significance(_results([0.1, 0.05, 0.2, 0.0, 0.1], [0.5, 0.3, 0.6, 0.45, 0.55]))[0]
    assert up.direction == "raises" and down.direction == "lowers"
    d = np.array([0.9, 0.95, 0.85, 1.0, 0.92]) - np.array([0.5, 0.3, 0.6, 0.45, 0.55])
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert up.effect == pytest.approx(d.mean()) and up.effect_ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert down.significant and down.effect < 0 and down.effect_ci[1] < 0
    # one-sided: a concept below random is not "significant"
    down1 = significance(_results([0.1, 0.05, 0.2, 0.0, 0.1], [0.5, 0.3, 0.6, 0.45, 0.55]), test="greater")[0]
    up1 = significance(_results([0.9, 0.95, 0.85, 1.0, 0.92], [0.5, 0.3, 0.6, 0.45, 0.55]), test="greater")[0]
    assert not down1.significant and up1.significant and up1.p_value == pytest.approx(up.p_value / 2)
