"""Step 6, statistical test: keep the concepts whose TCAV scores differ significantly from random_discovery's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace.tasks.params import choices, default
from ace.tasks.algorithm.cav import RANDOM_DISCOVERY, RandomSetScores

CORRECTIONS = choices("correction")
TESTS = choices("test")


@dataclass(frozen=True)
class ConceptScore:
    """One concept's TCAV scores over the random sets and its test against random_discovery.

    ``effect`` is the mean paired difference of TCAV scores (concept minus random_discovery, per
    random set) with its 95% confidence interval ``effect_ci``; ``direction`` says whether the concept
    ``raises`` or ``lowers`` the class relative to random (its sign)."""

    layer: str
    concept: str
    tcav_mean: float
    tcav_std: float
    p_value: float
    p_adjusted: float
    cav_accuracy: float
    significant: bool
    scores: tuple[float, ...]
    direction: str = "neither"
    effect: float = 0.0
    effect_ci: tuple[float, float] = (0.0, 0.0)


def adjust_p_values(p: np.ndarray, method: str = default("correction")) -> np.ndarray:
    """Multiple-comparison correction: none, bonferroni, holm, or fdr_bh (Benjamini-Hochberg)."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "fdr_bh":
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def paired_p_value(a: np.ndarray, b: np.ndarray, test: str = default("test")) -> float:
    """Paired t-test of ``a`` against ``b``: ``two-sided`` (they differ) or ``greater`` (``a`` is
    higher). Samples without variance in their differences give 1 or 0, not NaN."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if test not in TESTS:
        raise ValueError(f"--test must be one of {', '.join(TESTS)}, got {test!r}")
    d = a - b
    if len(a) < 2 or np.allclose(d, d[0]):
        if np.allclose(a, b):
            return 1.0
        return 0.0 if test == "two-sided" or d.mean() > 0 else 1.0
    from scipy import stats

    return float(stats.ttest_rel(a, b, alternative=test).pvalue)


def paired_effect(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Mean of ``a - b`` and its 95% confidence interval (Student's t, n - 1 degrees of freedom)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    mean = float(d.mean()) if len(d) else 0.0
    if len(d) < 2:
        return mean, (mean, mean)
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, (mean - half, mean + half)


def significance(results: list[RandomSetScores], alpha: float = default("alpha"),
                 correction: str = default("correction"), test: str = default("test")) -> list[ConceptScore]:
    """Score every concept of every layer in ``results`` against random_discovery.

    Each concept's N scores (one per random set) are compared with random_discovery's N scores in
    the same random sets by a paired t-test, two-sided (as the original: a concept that *lowers* the
    class significantly is kept too, marked ``lowers``) or ``greater`` (only concepts that raise it);
    a concept is significant if its (adjusted) p-value is <= ``alpha``. The correction is applied
    across all concepts of all layers.
    """
    layers = sorted({r.layer for r in results})
    rows = []
    for layer in layers:
        rs = sorted((r for r in results if r.layer == layer), key=lambda r: r.random_set)
        null = np.array([r.scores[RANDOM_DISCOVERY] for r in rs])
        concepts = [c for c in rs[0].scores if c != RANDOM_DISCOVERY] if rs else []
        for c in concepts:
            s = np.array([r.scores[c] for r in rs])
            acc = float(np.mean([r.accuracies[c] for r in rs]))
            rows.append((layer, c, s, paired_p_value(s, null, test), acc, paired_effect(s, null)))
    adj = adjust_p_values(np.array([r[3] for r in rows]), correction)
    return [
        ConceptScore(layer, c, float(s.mean()), float(s.std()), p, float(pa), acc, bool(pa <= alpha), tuple(map(float, s)),
                     "raises" if eff > 0 else "lowers" if eff < 0 else "neither", eff, ci)
        for (layer, c, s, p, acc, (eff, ci)), pa in zip(rows, adj)
    ]


def random_baseline(results: list[RandomSetScores], layer: str) -> tuple[float, float, float]:
    """Mean, std of random_discovery's TCAV scores and its mean CAV accuracy, for one layer."""
    rs = [r for r in results if r.layer == layer]
    s = np.array([r.scores[RANDOM_DISCOVERY] for r in rs])
    return float(s.mean()), float(s.std()), float(np.mean([r.accuracies[RANDOM_DISCOVERY] for r in rs]))
