"""Step 5, CAVs and TCAV: the CAV of every concept against one random set, and its TCAV score.

A CAV is the unit normal of a linear classifier (SGDClassifier(alpha=0.01, max_iter=1000,
tol=1e-3), as the original) separating the concept's flattened activations from a random set's,
pointing toward the concept. Its TCAV score is the share of the scoring images whose
class-*logit* gradient has a positive dot product with it (the original differentiated a
cross-entropy loss and counted negative products: the same sign convention up to the softmax).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from ace.storage.atomic import atomic_path
from ace.storage.tables import ArrayTable, TableWriter, as_bf16_bits
from ace.tasks.params import choices, default
from ace.tasks.algorithm.cluster import read_concepts

RANDOM_DISCOVERY = "random_discovery"


CAV_SOLVERS = choices("cav_solver")


def gram_coordinates(k_train: np.ndarray, k_cross: np.ndarray, rel_tol: float = 1e-10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of the training rows in an orthonormal basis of their span, from their Gram matrix.

    With ``K = X X^T = V diag(lam) V^T``, the rows of ``Z = V sqrt(lam)`` have the same inner products
    as the rows of ``X`` (``Z Z^T = K``); other rows ``x`` get ``z = (X x) V / sqrt(lam)`` from their
    cross products ``k_cross = X_other X^T``. Returns ``(Z_train, Z_other, B)`` where ``B = V / sqrt(lam)``
    maps a weight vector ``u`` in these coordinates back to row coefficients: ``w = X^T (B u)``."""
    lam, v = np.linalg.eigh(k_train)
    keep = lam > rel_tol * max(float(lam.max(initial=0.0)), 1e-30)
    lam, v = lam[keep], v[:, keep]
    back = v / np.sqrt(lam)
    return v * np.sqrt(lam), k_cross @ back, back


def fit_in_span(k_train: np.ndarray, y_train: np.ndarray, k_test: np.ndarray, y_test: np.ndarray, solver: str = default("cav_solver"),
                seed: int = default("seed"), alpha: float = 0.01, max_iter: int = 1000, tol: float = 1e-3
                ) -> tuple[np.ndarray, float, float]:
    """Fit the CAV's linear classifier from Gram matrices (see :func:`train_cav`).

    Returns ``(coef, intercept, accuracy)``: the weight vector is ``X_train^T coef``."""
    import sklearn

    # inputs are ours and finite: skip scikit-learn's per-call checks (most of a small fit's time)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return _fit_in_span(k_train, y_train, k_test, y_test, solver, seed, alpha, max_iter, tol)


def _fit_in_span(k_train, y_train, k_test, y_test, solver, seed, alpha, max_iter, tol):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier
    from sklearn.svm import SVC

    if solver == "sgd":
        z_tr, z_te, back = gram_coordinates(k_train, k_test)
        clf = SGDClassifier(alpha=alpha, max_iter=max_iter, tol=tol, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z_tr, y_train)
        # clf.score(z_te, y_test) without scikit-learn's input checks (most of a small fit's time):
        # the same product, the same threshold and classes as LinearClassifierMixin.predict
        decision = (z_te @ clf.coef_.T).ravel() + clf.intercept_
        accuracy = float(np.mean(clf.classes_[(decision > 0).astype(int)] == y_test))
        return back @ clf.coef_[0], float(clf.intercept_[0]), accuracy
    svm = SVC(kernel="precomputed", C=1.0 / (alpha * len(y_train)), tol=1e-6)
    svm.fit(k_train, y_train)
    coef = np.zeros(len(y_train))
    coef[svm.support_] = svm.dual_coef_[0]
    decision = svm.decision_function(k_train)
    # libsvm's sign convention: make coef's decision values agree with the classifier's
    sign = 1.0 if np.dot(k_train @ coef, decision) >= 0 else -1.0
    coef = sign * coef
    intercept = float(np.mean(decision - k_train @ coef))
    return coef, intercept, float(svm.score(k_test, y_test)) if len(y_test) else float("nan")


def train_cav(concept: np.ndarray, random: np.ndarray, seed: int = default("seed"), alpha: float = 0.01,
              max_iter: int = 1000, tol: float = 1e-3, test_size: float = 0.33, solver: str = default("cav_solver"),
              grams: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """Learn a CAV from (n, ...) concept and (m, ...) random activations.

    Both classes are truncated to the smaller size and split 67/33 (stratified, seeded). The linear
    classifier's weight vector lies in the span of its training rows (it starts at zero and every
    update adds a row), so it is fitted on the rows' coordinates in that span, computed from their
    n x n Gram matrix (:func:`gram_coordinates`), and mapped back to the full activation space once.

    ``solver="sgd"``: the original's ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)`` (hinge
    loss, L2 penalty, "optimal" learning rate, seeded shuffling): the same iterations as on the full
    activations, in milliseconds. ``solver="exact"``: the optimum of the same objective
    (``alpha/2 |w|^2 + mean hinge loss``, unpenalised intercept), as the hinge-loss dual with
    ``C = 1 / (alpha n)`` solved by libsvm on the Gram matrix.

    ``grams``: the inner products ``(concept x concept, concept x random, random x random)`` of the
    (truncated) rows, when the caller has them already (they are shared between CAVs).

    Returns:
        direction: (D,) float32 unit vector pointing toward the concept.
        accuracy: the classifier's accuracy on the held-out third.
    """
    if solver not in CAV_SOLVERS:
        raise ValueError(f"--cav_solver must be one of {', '.join(CAV_SOLVERS)}, got {solver!r}")
    n = min(len(concept), len(random))
    if n < 2:
        raise ValueError(f"a CAV needs at least 2 examples per class, got {len(concept)} and {len(random)}")
    pos = np.asarray(concept[:n], np.float32).reshape(n, -1)
    neg = np.asarray(random[:n], np.float32).reshape(n, -1)
    g_pp, g_pn, g_nn = grams if grams is not None else (pos @ pos.T, pos @ neg.T, neg @ neg.T)
    gram = np.empty((2 * n, 2 * n))
    gram[:n, :n], gram[:n, n:] = g_pp[:n, :n], g_pn[:n, :n]
    gram[n:, :n], gram[n:, n:] = gram[:n, n:].T, g_nn[:n, :n]
    y, tr, te = _split(n, test_size, seed)
    coef, _, accuracy = fit_in_span(gram[np.ix_(tr, tr)], y[tr], gram[np.ix_(te, tr)], y[te], solver, seed, alpha,
                                    max_iter, tol)
    full = np.zeros(2 * n, np.float32)
    if solver == "exact":  # the direction: the optimum on every example, which no seed changes
        full[:] = fit_in_span(gram, y, gram[:0], y[:0], solver, seed, alpha, max_iter, tol)[0]
    else:
        full[tr] = coef
    w = (full[:n] @ pos + full[n:] @ neg).astype(np.float64)
    norm = np.linalg.norm(w)
    direction = (w / norm if norm > 0 else w).astype(np.float32)
    return direction, accuracy


@functools.lru_cache(maxsize=64)
def _split(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (``n`` concept rows, then ``n`` random rows) and their seeded, stratified train/test
    split: the same for every CAV of a size, so they are computed once (read-only)."""
    from sklearn.model_selection import train_test_split

    y = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
    tr, te = train_test_split(np.arange(2 * n), test_size=test_size, stratify=y, random_state=seed)
    for a in (y, tr, te):
        a.setflags(write=False)
    return y, tr, te


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
    """Gather the full activations of every concept's examples into one compact table (stored in the
    source's precision)."""
    concepts = read_concepts(concepts_path)
    src = ArrayTable(acts_path)
    bf16 = src.columns["act"]["dtype"] == "bfloat16"
    # every concept's rows in one pass over the table (its members are spread over most row groups:
    # a read per concept decoded the whole table once per concept)
    rows = [r for c in concepts for r in c.examples]
    acts = src.read("act", rows) if rows else None
    with TableWriter(out, {"concepts": [c.name for c in concepts]}) as w:
        start = 0
        for k, c in enumerate(concepts):
            act, start = acts[start:start + len(c.examples)], start + len(c.examples)
            if bf16:  # exact: the float32 values came from bfloat16
                act = as_bf16_bits((act.view(np.uint32) >> 16).astype(np.uint16))
            w.append(act=act, concept=np.full(len(c.examples), k, np.int64))
    return out


@functools.lru_cache(maxsize=4)
def _shared(path: str, column: str, by_concept: bool = False):
    """Arrays every random set's task reads (concept and random_discovery activations, gradients),
    read once per process and kept read-only."""
    t = ArrayTable(path)
    values = t.read(column)
    values = values.reshape(len(values), -1) if column == "act" else values
    values.setflags(write=False)
    if not by_concept:
        return values, values @ values.T if column == "act" else None
    which = np.asarray(t.read("concept"))
    # rows of each concept: a slice (rows are written concept by concept), so its activations are a view
    groups = []
    for k in range(int(which.max()) + 1 if len(which) else 0):
        idx = np.flatnonzero(which == k)
        contiguous = len(idx) and idx[-1] - idx[0] + 1 == len(idx)
        groups.append(slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx)
    return values, groups, [values[rows] @ values[rows].T for rows in groups]


def release_shared() -> None:
    """Let go of the arrays :func:`_shared` keeps for the random-set tasks of a class (its concepts'
    activations and their inner products, the gradients): once its CAVs are scored, so that the next
    class of a sweep does not carry them through its own steps (crop mode: ~70 MB at 50 images)."""
    _shared.cache_clear()


def score_random_set(concepts_path: str, concept_acts_path: str, random_discovery_acts: str, random_acts: str,
                     grads_path: str, layer: str, random_set: str, seed: int, solver: str, out: str) -> RandomSetScores:
    """Train the CAV of every concept and of ``random_discovery`` against one random set, score them
    with TCAV, and save the CAVs to ``out`` (npz: names, cavs, accuracies, scores)."""
    concepts = read_concepts(concepts_path)
    neg = ArrayTable(random_acts).read("act")
    neg = neg.reshape(len(neg), -1)
    g_nn = neg @ neg.T
    grads, _ = _shared(grads_path, "grad")
    rd, g_rd = _shared(random_discovery_acts, "act")
    positives = []
    if concepts:  # the concepts' own inner products are shared by every random set; the cross ones in one product
        acts, groups, g_own = _shared(concept_acts_path, "act", True)
        cross = acts @ neg.T
        positives = [(c.name, acts[rows], g_own[k], cross[rows]) for k, (c, rows) in enumerate(zip(concepts, groups))]
    positives.append((RANDOM_DISCOVERY, rd, g_rd, rd @ neg.T))

    # one CAV after another: each is a few small BLAS calls that already use every core (threads
    # were slower: a small SGD fit is mostly scikit-learn's Python, under the GIL)
    fitted = [train_cav(pos, neg, seed=seed, solver=solver, grams=(g_pp, g_pn, g_nn)) for _, pos, g_pp, g_pn in positives]
    names = [p[0] for p in positives]
    dirs = [d for d, _ in fitted]
    accs = [acc for _, acc in fitted]
    scores = [tcav_score(grads, d) for d in dirs]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(names), cavs=np.stack(dirs), accuracies=np.array(accs), scores=np.array(scores),
                     layer=layer, random_set=random_set)
    return RandomSetScores(layer, random_set, dict(zip(names, map(float, scores))), dict(zip(names, map(float, accs))),
                           out)


def read_random_set_scores(out: str) -> RandomSetScores:
    """The :class:`RandomSetScores` saved by :func:`score_random_set` at ``out``."""
    with np.load(out) as z:
        names = [str(n) for n in z["names"]]
        return RandomSetScores(str(z["layer"]), str(z["random_set"]), dict(zip(names, map(float, z["scores"]))),
                               dict(zip(names, map(float, z["accuracies"]))), out)
