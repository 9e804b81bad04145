import numpy as np

from ace.tasks.cav import tcav_score, train_cav


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
