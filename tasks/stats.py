"""Step 9: keep the concepts whose TCAV scores differ significantly from random_discovery's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace.tasks.caching import ace_task
from ace.tasks.cav import RANDOM_DISCOVERY, RandomSetScores

CORRECTIONS = ("none", "bonferroni", "holm", "fdr_bh")


@dataclass(frozen=True)
class ConceptScore:
    """One concept's TCAV scores over the random sets and its test against random_discovery."""

    layer: str
    concept: str
    tcav_mean: float
    tcav_std: float
    p_value: float
    p_adjusted: float
    cav_accuracy: float
    significant: bool
    scores: tuple[float, ...]


def adjust_p_values(p: np.ndarray, method: str = "none") -> np.ndarray:
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


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test; identical samples (no variance) give p = 1, not NaN."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.allclose(a - b, (a - b)[0]):
        return 1.0 if np.allclose(a, b) else 0.0
    from scipy import stats

    return float(stats.ttest_rel(a, b).pvalue)


def significance(results: list[RandomSetScores], alpha: float = 0.01, correction: str = "none") -> list[ConceptScore]:
    """Score every concept of every layer in ``results`` against random_discovery.

    Each concept's N scores (one per random set) are compared with random_discovery's N scores in
    the same random sets by a paired two-sided t-test; a concept is significant if its (adjusted)
    p-value is <= ``alpha``. The correction is applied across all concepts of all layers.
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
            rows.append((layer, c, s, paired_p_value(s, null), acc))
    adj = adjust_p_values(np.array([r[3] for r in rows]), correction)
    return [
        ConceptScore(layer, c, float(s.mean()), float(s.std()), p, float(pa), acc, bool(pa <= alpha), tuple(map(float, s)))
        for (layer, c, s, p, acc), pa in zip(rows, adj)
    ]


def random_baseline(results: list[RandomSetScores], layer: str) -> tuple[float, float, float]:
    """Mean, std of random_discovery's TCAV scores and its mean CAV accuracy, for one layer."""
    rs = [r for r in results if r.layer == layer]
    s = np.array([r.scores[RANDOM_DISCOVERY] for r in rs])
    return float(s.mean()), float(s.std()), float(np.mean([r.accuracies[RANDOM_DISCOVERY] for r in rs]))


@ace_task("statistical-test")
def stats_task(results: list[RandomSetScores], alpha: float = 0.01, correction: str = "none") -> list[ConceptScore]:
    return significance(results, alpha, correction)
