"""Step 4, cluster: the superpixel embeddings of a layer and keep clusters as concepts."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from ace.storage.layout import concept_name
from ace.storage.atomic import write_text
from ace.storage.tables import ArrayTable, write_table
from ace.tasks.errors import ACEInputError
from ace.tasks.params import choices, default

CLUSTERING_METHODS = choices("clustering_method")


def consensus_kmeans(x: np.ndarray, n_clusters: int, seed: int, runs: int) -> np.ndarray:
    """Labels (N,) of a consensus of ``runs`` KMeans clusterings (evidence accumulation, Fred & Jain 2005).

    Every run (one initialisation each, seeds drawn from ``seed``) votes for the pairs it puts in one
    cluster; two superpixels are ``1 - share of the runs that put them together`` apart, and the
    average-linkage tree of these distances is cut into ``n_clusters`` clusters. Cuts that depend on
    one initialisation fall apart in the vote, groups that every run keeps together stay, so the
    clusters are a property of the embeddings rather than of the seed. Labels are numbered by each
    cluster's first superpixel. Memory: two float64 arrays of N (N - 1) / 2 (216 MB at 5,200).
    """
    from concurrent.futures import ThreadPoolExecutor

    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    n = len(x)
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(runs)]

    def one_thread() -> None:  # OpenMP's thread count is per thread: a limit set in the caller does
        threadpool_limits(limits=1, user_api="openmp")  # not reach the pool's threads

    def one_run(s: int) -> np.ndarray:  # one thread each (the same result on any machine), runs side by side
        return KMeans(n_clusters=n_clusters, n_init=1, random_state=s).fit_predict(x)

    workers = min(runs, os.cpu_count() or 1)
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers, initializer=one_thread) as pool:
        votes = np.stack(list(pool.map(one_run, seeds))).astype(np.min_scalar_type(n_clusters))
        distance = np.empty(n * (n - 1) // 2, np.float64)  # condensed, row by row: no N x N matrix
        starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])

        def rows(first: int) -> None:  # every `workers`-th row: numpy's comparisons run side by side
            for i in range(first, n - 1, workers):
                together = np.count_nonzero(votes[:, i + 1:] == votes[:, i:i + 1], axis=0)
                distance[starts[i]:starts[i + 1]] = 1.0 - together / runs

        list(pool.map(rows, range(workers)))
    del votes
    tree = linkage(distance, method="average")
    del distance
    labels = fcluster(tree, n_clusters, criterion="maxclust")
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # cluster of the lowest superpixel index first
    return order[np.searchsorted(np.unique(labels), labels)].astype(np.int64)


def cluster_embeddings(x: np.ndarray, method: str = default("clustering_method"), n_clusters: int = default("n_clusters"),
                       seed: int = default("seed"), consensus: int = 1,
                       damping: float = 0.5, eps: float = 0.5, min_samples: int = 20, n_jobs: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster (N, C) embeddings.

    ``consensus`` > 1 (KM only) makes the clusters by :func:`consensus_kmeans` over that many runs;
    1 is the original's single KMeans (10 initialisations, the best kept).
    Returns ``labels`` (N,; -1 for DBSCAN noise), ``cost`` (N,; distance to the own cluster's
    centre) and ``centers`` (K, C). Methods without centres (MS, SC, DB) use each cluster's medoid;
    the consensus uses each cluster's mean.
    """
    from sklearn import cluster as skcluster  # imported here: the CLI starts faster
    from sklearn.metrics import pairwise_distances

    x = np.asarray(x, dtype=np.float32)
    if method not in CLUSTERING_METHODS:
        raise ACEInputError(f"--clustering_method {method!r}: choose one of {', '.join(CLUSTERING_METHODS)}")
    centers = None
    if method in ("KM", "SC") and len(x) < n_clusters:
        raise ACEInputError(f"{len(x)} superpixels cannot make {n_clusters} clusters: lower --n_clusters or add images")
    if method == "KM" and consensus > 1:
        labels = consensus_kmeans(x, n_clusters, seed, consensus)
        centers = np.stack([x[labels == c].mean(0) for c in range(int(labels.max()) + 1)]).astype(np.float32)
        cost = np.linalg.norm(x - centers[labels], axis=1)
        return labels, cost.astype(np.float32), centers
    if method == "KM":
        from threadpoolctl import threadpool_limits

        # one thread: the same clusters on every machine (with more, float32 sums depend on the
        # thread count), and 1.7x faster at ACE's sizes (thousands of superpixels) than two
        with threadpool_limits(limits=1):
            km = skcluster.KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(x)
        centers = km.cluster_centers_.astype(np.float32)
    elif method == "AP":
        ap = skcluster.AffinityPropagation(damping=damping, random_state=seed).fit(x)
        centers = np.asarray(ap.cluster_centers_, np.float32)
    elif method == "MS":
        labels = skcluster.MeanShift(n_jobs=n_jobs).fit_predict(x)
    elif method == "SC":
        labels = skcluster.SpectralClustering(n_clusters=n_clusters, random_state=seed, n_jobs=n_jobs).fit_predict(x)
    else:
        labels = skcluster.DBSCAN(eps=eps, min_samples=min_samples, n_jobs=n_jobs).fit_predict(x)
    if centers is not None:
        d = pairwise_distances(x, centers)
        labels, cost = d.argmin(1), d.min(1)
        return labels.astype(np.int64), cost.astype(np.float32), centers
    k = int(labels.max()) + 1
    centers = np.zeros((k, x.shape[1]), np.float32)
    cost = np.full(len(x), np.inf, np.float32)
    for c in range(k):
        idx = np.nonzero(labels == c)[0]
        pts = x[idx]
        centers[c] = pts[pairwise_distances(pts).sum(1).argmin()]
        cost[idx] = np.linalg.norm(pts - centers[c], axis=1)
    return labels.astype(np.int64), cost, centers


def is_concept(n_members: int, n_images: int, n_discovery: int, min_imgs: int) -> bool:
    """ACE's acceptance rule with U distinct images, N members, D discovery images."""
    u, n, d = n_images, n_members, n_discovery
    if n <= min_imgs:
        return False
    return u > 0.5 * n or (u > 0.25 * n and u > 0.25 * d) or (u > 0.1 * n and u > 0.5 * d)


@dataclass(frozen=True)
class Concept:
    """A kept cluster: ``examples`` are rows of the segments table (superpixels), nearest to the centre first."""

    name: str
    cluster: int
    size: int
    n_images: int
    examples: tuple[int, ...]


def filter_concepts(labels: np.ndarray, cost: np.ndarray, image_index: np.ndarray, n_discovery: int,
                    min_imgs: int, max_imgs: int, target_class: str) -> list[Concept]:
    """Clusters that pass :func:`is_concept`, named ``<target_class>_concept<k>`` (k from 1), as the
    original ACE named them."""
    concepts = []
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        idx = np.nonzero(labels == c)[0]
        u = len(np.unique(image_index[idx]))
        if is_concept(len(idx), u, n_discovery, min_imgs):
            order = idx[np.argsort(cost[idx], kind="stable")][:max_imgs]
            name = concept_name(target_class, len(concepts) + 1)
            concepts.append(Concept(name, c, int(len(idx)), int(u), tuple(int(i) for i in order)))
    return concepts


def write_clusters(acts_path: str, method: str, n_clusters: int, seed: int, out: str, consensus: int = 1) -> str:
    """Cluster the channel-mean embeddings of an activations table; write labels and costs."""
    embeddings = ArrayTable(acts_path).read("mean")
    labels, cost, centers = cluster_embeddings(embeddings, method, n_clusters=n_clusters, seed=seed,
                                               consensus=consensus)
    write_table(out, {"method": method, "n_clusters": int(len(centers)),
                      "consensus": consensus if method == "KM" else 1}, label=labels, cost=cost)
    return out


def write_concepts(clusters_path: str, segments_path: str, layer: str, target_class: str, n_discovery: int,
                   min_imgs: int, max_imgs: int, out: str) -> str:
    """Keep the clusters that pass the filter; write them as ``<target_class>_concept<k>`` JSON."""
    t = ArrayTable(clusters_path)
    labels, cost = t.read("label"), t.read("cost")
    image_index = np.asarray(ArrayTable(segments_path).read("image_index"))  # of each superpixel
    concepts = filter_concepts(labels, cost, image_index, n_discovery, min_imgs, max_imgs, target_class)
    write_text(out, json.dumps({"layer": layer, "n_superpixels": int(len(labels)),
                                "concepts": [asdict(c) for c in concepts]}, indent=1))
    return out


def read_concepts(path: str) -> list[Concept]:
    with open(path) as f:
        data = json.load(f)
    return [Concept(c["name"], c["cluster"], c["size"], c["n_images"], tuple(c["examples"])) for c in data["concepts"]]
