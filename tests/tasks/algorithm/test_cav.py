import numpy as np

from ace.tasks.algorithm.cav import tcav_score, train_cav


def separable(n=40, d=30, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0, 1, (n, d)).astype(np.float32)
    neg = rng.normal(0, 1, (n + 7, d)).astype(np.float32)
    pos[:, 0] += 12.0
    return pos, neg


def test_separable_sets_give_accuracy_one_and_point_to_the_concept():
    pos, neg = separable()
    direction, acc = train_cav(pos, neg, seed=0)
    assert acc == 1.0
    assert np.isclose(np.linalg.norm(direction), 1.0, atol=1e-5)
    assert direction @ (pos.mean(0) - neg.mean(0)) > 0
    assert np.argmax(np.abs(direction)) == 0 and direction[0] > 0
    # swapping the classes flips the CAV
    flipped, _ = train_cav(neg, pos, seed=0)
    assert flipped[0] < 0


def test_cav_is_seeded_and_takes_tensors_of_any_shape():
    pos, neg = separable()
    a, _ = train_cav(pos.reshape(-1, 3, 10), neg.reshape(-1, 3, 10), seed=1)
    b, _ = train_cav(pos, neg, seed=1)
    np.testing.assert_array_equal(a, b)


def test_tcav_score_of_the_gradient_direction_is_one():
    rng = np.random.default_rng(0)
    g = rng.normal(0, 1, 20)
    grads = np.stack([g * s for s in rng.uniform(0.1, 2, 50)])
    direction = g / np.linalg.norm(g)
    assert tcav_score(grads, direction) == 1.0
    assert tcav_score(grads, -direction) == 0.0
    mixed = np.concatenate([grads[:30], -grads[:20]])
    assert tcav_score(mixed, direction) == 0.6


def overlapping(n=50, d=3000, seed=0):
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, 1, d)
    pos = (rng.normal(0, 1, (n, d)) + 0.1 * shift).astype(np.float32)
    neg = rng.normal(0, 1, (n, d)).astype(np.float32)
    return pos, neg


def test_sgd_in_the_span_is_the_original_sgd_on_full_activations():
    """Parity: scikit-learn's SGDClassifier on the full rows (the original) and ours on their
    coordinates in the rows' span take the same steps (same seeded shuffles)."""
    import warnings

    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import train_test_split

    pos, neg = overlapping()
    for seed in (0, 3):
        x = np.concatenate([pos, neg])
        y = np.r_[np.ones(50), np.zeros(50)].astype(int)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.33, stratify=y, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed).fit(x_tr, y_tr)
        w_ref = ref.coef_[0] / np.linalg.norm(ref.coef_[0])
        direction, acc = train_cav(pos, neg, seed=seed, solver="sgd")
        assert float(direction @ w_ref) > 0.9999
        assert acc == ref.score(x_te, y_te)


def test_exact_solver_reaches_the_optimum_of_the_sgd_objective():
    from ace.tasks.algorithm.cav import fit_in_span

    pos, neg = overlapping(n=30, d=200, seed=1)
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.r_[np.ones(30), np.zeros(30)].astype(int)
    k = x @ x.T
    alpha = 0.01

    def objective(w, b):
        s = np.where(y == 1, 1.0, -1.0)
        return alpha / 2 * w @ w + np.mean(np.maximum(0, 1 - s * (x @ w + b)))

    c_ex, b_ex, _ = fit_in_span(k, y, k, y, "exact", alpha=alpha)
    c_sgd, b_sgd, _ = fit_in_span(k, y, k, y, "sgd", alpha=alpha)
    w_ex = x.T @ c_ex
    best = objective(w_ex, b_ex)
    assert best <= objective(x.T @ c_sgd, b_sgd) + 1e-9
    rng = np.random.default_rng(0)
    for _ in range(200):  # a convex objective: no nearby point does better
        dw, db = rng.normal(0, 1e-3, w_ex.shape), rng.normal(0, 1e-3)
        assert best <= objective(w_ex + dw, b_ex + db) + 1e-7


def test_both_solvers_point_to_the_concept():
    pos, neg = separable()
    for solver in ("sgd", "exact"):
        direction, acc = train_cav(pos, neg, seed=0, solver=solver)
        assert acc == 1.0 and direction[0] > 0.5 and np.isclose(np.linalg.norm(direction), 1, atol=1e-5)


def test_exact_cav_is_the_same_for_every_seed_and_sgd_is_not():
    pos, neg = overlapping(n=40, d=60, seed=3)
    exact = [train_cav(pos, neg, seed=s, solver="exact") for s in range(4)]
    for direction, _ in exact[1:]:
        np.testing.assert_allclose(direction, exact[0][0], atol=1e-6)
    assert len({acc for _, acc in exact}) > 1  # the accuracy is still measured on seeded held-out splits
    sgd = [train_cav(pos, neg, seed=s, solver="sgd")[0] for s in range(4)]
    assert max(np.abs(d - sgd[0]).max() for d in sgd[1:]) > 1e-3
