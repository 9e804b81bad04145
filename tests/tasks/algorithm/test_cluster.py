import numpy as np
import pytest

from ace.tasks.algorithm.cluster import CLUSTERING_METHODS, cluster_embeddings, filter_concepts, is_concept
from ace.tasks.errors import ACEInputError


def blobs(n=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.3, (n, 2)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), n)


@pytest.mark.parametrize("method", CLUSTERING_METHODS)
def test_every_method_recovers_three_blobs(method):
    x, truth = blobs()
    kwargs = dict(n_clusters=3, eps=1.5, min_samples=5, damping=0.9)
    labels, cost, centers = cluster_embeddings(x, method, **kwargs)
    assert len(centers) == 3
    # same partition up to renaming
    for k in range(3):
        assert len(set(labels[truth == k])) == 1
    assert cost.shape == (len(x),) and cost.max() < 2.0


def test_kmeans_is_seeded_and_medoid_is_a_member():
    x, _ = blobs()
    a = cluster_embeddings(x, "KM", n_clusters=3, seed=3)
    b = cluster_embeddings(x, "KM", n_clusters=3, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    _, _, centers = cluster_embeddings(x, "DB", eps=1.5, min_samples=5)
    for c in centers:
        assert np.isclose(np.abs(x - c).sum(1), 0).any()


def test_too_few_points_and_unknown_method():
    with pytest.raises(ACEInputError, match="--n_clusters"):
        cluster_embeddings(np.zeros((3, 2)), "KM", n_clusters=25)
    with pytest.raises(ACEInputError, match="KM"):
        cluster_embeddings(np.zeros((3, 2)), "XX")


def test_acceptance_rule():
    # (members N, distinct images U, discovery D, min_imgs)
    assert not is_concept(30, 30, 50, 30)  # needs more than min_imgs members
    assert is_concept(40, 21, 50, 30)  # U > 0.5 N
    assert not is_concept(100, 20, 100, 30)  # none of the three holds
    assert is_concept(100, 30, 100, 30)  # U > 0.25 N and U > 0.25 D
    assert is_concept(200, 30, 50, 30)  # U > 0.1 N and U > 0.5 D
    assert not is_concept(400, 30, 50, 30)  # U <= 0.1 N


def test_filter_keeps_closest_members_and_names_concepts():
    labels = np.array([0] * 6 + [1] * 6 + [2] * 2)
    cost = np.array([5, 1, 3, 2, 4, 0, 1, 1, 1, 1, 1, 1, 0, 0], np.float32)
    image_index = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 1, 0, 1])
    concepts = filter_concepts(labels, cost, image_index, n_discovery=6, min_imgs=3, max_imgs=4, target_class="fire engine")
    # cluster 0: 6 members from 6 images; cluster 1: 6 members from 2 images (2 > 0.25*6 but not > 0.25*6 D?)
    assert [c.name for c in concepts][0] == "fire_engine_concept1"  # as the original ACE names them
    c0 = concepts[0]
    assert c0.cluster == 0 and c0.examples == (5, 1, 3, 2) and c0.size == 6 and c0.n_images == 6
    assert all(c.cluster != 2 for c in concepts)  # too small


def test_consensus_is_the_same_for_every_seed():
    # 4 blobs cut into 3 clusters, A and B nearer each other than the others; runs of one
    # initialisation often split a blob or merge a wrong pair, the vote merges A and B every time
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [3.5, 0], [0, 9], [9, 9]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.8, (40, 2)) for c in centres]).astype(np.float32)
    blob = np.repeat(np.arange(4), 40)
    from sklearn.metrics import adjusted_rand_score

    runs = [cluster_embeddings(x, "KM", n_clusters=3, seed=s, consensus=30) for s in range(6)]
    for labels, cost, centers in runs:
        assert adjusted_rand_score(runs[0][0], labels) == 1.0
        assert adjusted_rand_score(np.array([0, 0, 1, 2])[blob], labels) == 1.0  # A and B together
        assert len(centers) == 3 and labels[0] == 0  # numbered by each cluster's first member
        np.testing.assert_allclose(cost, np.linalg.norm(x - centers[labels], axis=1), rtol=1e-5)


def test_consensus_of_one_run_is_the_original_kmeans():
    x, _ = blobs()
    from sklearn.cluster import KMeans

    labels, _, centers = cluster_embeddings(x, "KM", n_clusters=3, seed=2, consensus=1)
    km = KMeans(n_clusters=3, n_init=10, random_state=2).fit(x)
    np.testing.assert_allclose(centers, km.cluster_centers_, rtol=1e-5)
    np.testing.assert_array_equal(labels, km.labels_)


def test_every_consensus_run_uses_one_thread(monkeypatch):
    # the runs go to a thread pool; OpenMP's thread count is per thread, so a limit set by the
    # caller alone left each run on all cores (on 2 cores, 2 of 50 runs' labels and every centre
    # differed from a one-thread run's): the clusters depended on the machine
    import sklearn.cluster
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    seen = []

    class Recording(sklearn.cluster.KMeans):
        def fit(self, x, y=None, sample_weight=None):
            seen.append((self.random_state, _openmp_effective_n_threads()))
            return super().fit(x, y, sample_weight)

    monkeypatch.setattr(sklearn.cluster, "KMeans", Recording)
    x = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
    labels, _, _ = cluster_embeddings(x, "KM", n_clusters=5, seed=1, consensus=6)
    assert len(seen) == 6 and {n for _, n in seen} == {1}
    assert [s for s, _ in seen] == [int(s) for s in np.random.SeedSequence(1).generate_state(6)]
