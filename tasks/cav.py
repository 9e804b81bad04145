"""Steps 7 and 8: CAVs of every concept against one random set, and their TCAV scores.

A CAV is the unit normal of a linear classifier (SGDClassifier(alpha=0.01, max_iter=1000,
tol=1e-3), as the original) separating the concept's flattened activations from a random set's,
pointing toward the concept. Its TCAV score is the share of the scoring images whose
class-*logit* gradient has a positive dot product with it (the original differentiated a
cross-entropy loss and counted negative products: the same sign convention up to the softmax).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from ace.storage.atomic import atomic_path
from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.caching import ace_task
from ace.tasks.cluster import read_concepts

RANDOM_DISCOVERY = "random_discovery"


def train_cav(concept: np.ndarray, random: np.ndarray, seed: int = 0, alpha: float = 0.01, max_iter: int = 1000,
              tol: float = 1e-3, test_size: float = 0.33) -> tuple[np.ndarray, float]:
    """Learn a CAV from (n, ...) concept and (m, ...) random activations.

    Both classes are truncated to the smaller size, split 67/33 (stratified, seeded).

    Returns:
        direction: (D,) float32 unit vector pointing toward the concept.
        accuracy: the classifier's accuracy on the held-out third.
    """
    n = min(len(concept), len(random))
    if n < 2:
        raise ValueError(f"a CAV needs at least 2 examples per class, got {len(concept)} and {len(random)}")
    x = np.concatenate([concept[:n].reshape(n, -1), random[:n].reshape(n, -1)]).astype(np.float32, copy=False)
    y = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    clf = SGDClassifier(alpha=alpha, max_iter=max_iter, tol=tol, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    w = clf.coef_[0].astype(np.float64)
    norm = np.linalg.norm(w)
    direction = (w / norm if norm > 0 else w).astype(np.float32)
    return direction, float(clf.score(x_te, y_te))


def tcav_score(gradients: np.ndarray, direction: np.ndarray) -> float:
    """Share of rows of ``gradients`` (N, ...) whose dot product with ``direction`` is positive."""
    g = gradients.reshape(len(gradients), -1)
    return float(np.mean(g @ direction.reshape(-1) > 0))


@dataclass(frozen=True)
class RandomSetScores:
    """TCAV scores and CAV accuracies of every concept (and ``random_discovery``) vs one random set."""

    layer: str
    random_set: str
    scores: dict[str, float]
    accuracies: dict[str, float]
    cav_path: str


def write_concept_acts(concepts_path: str, acts_path: str, out: str) -> str:
    """Gather the full activations of every concept's examples into one compact table."""
    concepts = read_concepts(concepts_path)
    src = ArrayTable(acts_path)
    with TableWriter(out, {"concepts": [c.name for c in concepts]}) as w:
        for k, c in enumerate(concepts):
            w.append(act=src.read("act", list(c.examples)), concept=np.full(len(c.examples), k, np.int64))
    return out


def score_random_set(concepts_path: str, concept_acts_path: str, random_discovery_acts: str, random_acts: str,
                     grads_path: str, layer: str, random_set: str, seed: int, out: str, n_jobs: int = 1
                     ) -> RandomSetScores:
    """Train the CAV of every concept and of ``random_discovery`` against one random set, score them
    with TCAV, and save the CAVs to ``out`` (npz: names, cavs, accuracies, scores)."""
    concepts = read_concepts(concepts_path)
    ca = ArrayTable(concept_acts_path)
    neg = ArrayTable(random_acts).read("act")
    grads = ArrayTable(grads_path).read("grad")
    positives = []
    if concepts:
        acts, which = ca.read("act"), np.asarray(ca.read("concept"))
        positives = [(c.name, acts[which == k]) for k, c in enumerate(concepts)]
    positives.append((RANDOM_DISCOVERY, ArrayTable(random_discovery_acts).read("act")))
    # SGD releases the GIL: threads train several CAVs at once
    fitted = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(train_cav)(pos, neg, seed=seed) for _, pos in positives)
    names = [name for name, _ in positives]
    dirs = [d for d, _ in fitted]
    accs = [acc for _, acc in fitted]
    scores = [tcav_score(grads, d) for d in dirs]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(names), cavs=np.stack(dirs), accuracies=np.array(accs), scores=np.array(scores),
                     layer=layer, random_set=random_set)
    return RandomSetScores(layer, random_set, dict(zip(names, map(float, scores))), dict(zip(names, map(float, accs))),
                           out)


@ace_task("concept-activations")
def concept_acts_task(concepts_path: str, acts_path: str, out: str) -> str:
    return write_concept_acts(concepts_path, acts_path, out)


def read_random_set_scores(out: str) -> RandomSetScores:
    """The :class:`RandomSetScores` saved by :func:`score_random_set` at ``out``."""
    with np.load(out) as z:
        names = [str(n) for n in z["names"]]
        return RandomSetScores(str(z["layer"]), str(z["random_set"]), dict(zip(names, map(float, z["scores"]))),
                               dict(zip(names, map(float, z["accuracies"]))), out)


@ace_task("cav-tcav", load=read_random_set_scores)
def cav_task(concepts_path: str, concept_acts_path: str, random_discovery_acts: str, random_acts: str,
             grads_path: str, layer: str, random_set: str, seed: int, out: str, n_jobs: int = 1) -> RandomSetScores:
    return score_random_set(concepts_path, concept_acts_path, random_discovery_acts, random_acts, grads_path,
                            layer, random_set, seed, out, n_jobs)
