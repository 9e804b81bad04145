"""How much of the decision the concepts explain (completeness), and whether their order of
importance is faithful (C-Deletion / C-Insertion), on the scoring images; part of the evaluation.

Every scoring superpixel is assigned to a significant concept of the layer as for the SSC/SDC
evaluation (nearest concept centre, within the concept's radius); concept ``j``'s region in an
image is the union of its superpixels there. With ``p(x)`` the model's class probability, ``x``
the image, ``x_S`` the image with only the regions of the concepts ``S`` kept (the rest filled
with the neutral colour) and ``x_0`` the image filled entirely, averaged over the images:

* ``completeness = (p(x_C) - p(x_0)) / (p(x) - p(x_0))`` for the set ``C`` of all concepts: the
  share of the class probability the model gets back from the concepts alone (1: they explain the
  whole decision; 0: no more than a blank image). This is an occlusion form of Yeh et al.'s
  completeness (NeurIPS 2020), whose ratio ``(acc(concepts) - acc(random)) / (acc(model) - acc(random))``
  it follows with the concepts' pixels in place of a learned map from concept scores;
  ``completeness_without`` gives it for ``C`` minus each concept.
* ``deletion``: concepts removed one at a time (their regions filled), in an ``order``, from the
  full image; the curve is the mean class probability after k removals, k = 0..K (every concept),
  and ``aopc = mean_k (p_0 - p_k)`` over k = 1..K (higher: the order removes what matters first).
* ``insertion``: from the filled image, concepts put back one at a time in an ``order``; ``auc`` is
  the mean of its curve over k = 0..K (higher: the order puts back what matters first).

Orders: ``tcav`` (mean TCAV, highest first, the same for every image), ``image`` (per image, the
concept's occlusion weight there, highest first: ``p(x) - p(x without it)``) and ``random`` (a
seeded permutation per image).
"""

from __future__ import annotations

import numpy as np

from ace.tasks.algorithm.patches import make_patch

ORDERS = ("tcav", "image", "random")


def concept_regions(masks: np.ndarray, image_index: np.ndarray, assigned: np.ndarray, n_images: int,
                    n_concepts: int) -> np.ndarray:
    """(n_images, n_concepts, H, W) bool: each concept's region (union of its superpixels) per image."""
    regions = np.zeros((n_images, n_concepts, *masks.shape[1:]), bool)
    for r in np.flatnonzero(assigned >= 0):
        regions[image_index[r], assigned[r]] |= masks[r]
    return regions


def _keep(image: np.ndarray, regions: np.ndarray, chosen, fill) -> np.ndarray:
    """``image`` with only the regions of ``chosen`` concepts kept."""
    mask = regions[list(chosen)].any(0) if len(chosen) else np.zeros(regions.shape[1:], bool)
    return make_patch(image, mask, fill)


def fidelity(probabilities, images: np.ndarray, regions: np.ndarray, tcav: list[float],
             fill: tuple[float, float, float], seed: int) -> dict:
    """Completeness and the deletion / insertion curves (this module's docstring).

    ``probabilities(batch)`` returns the class probability of each uint8 image of a batch; ``regions``
    comes from :func:`concept_regions`; ``tcav`` is each concept's mean TCAV."""
    n, k = len(images), regions.shape[1]
    rng = np.random.default_rng(seed)
    everything = tuple(range(k))
    full = probabilities(images)
    blank = probabilities(np.stack([_keep(img, r, (), fill) for img, r in zip(images, regions)]))
    kept = probabilities(np.stack([_keep(img, r, everything, fill) for img, r in zip(images, regions)]))
    without = np.stack([probabilities(np.stack([_keep(img, r, [c for c in everything if c != j], fill)
                                                for img, r in zip(images, regions)])) for j in range(k)], 1) \
        if k else np.zeros((n, 0))
    # each concept's weight in each image: the probability lost when it alone is removed
    removed = np.stack([probabilities(np.stack([make_patch(img, ~r[j], fill) for img, r in zip(images, regions)]))
                        for j in range(k)], 1) if k else np.zeros((n, 0))
    weight = full[:, None] - removed
    orders = {"tcav": [list(np.argsort(-np.asarray(tcav), kind="stable"))] * n,
              "image": [list(np.argsort(-w, kind="stable")) for w in weight],
              "random": [list(rng.permutation(k)) for _ in range(n)]}
    gap = float(full.mean() - blank.mean())
    result = {"n_images": int(n), "n_concepts": int(k), "probability": float(full.mean()),
              "blank": float(blank.mean()), "concepts_only": float(kept.mean()),
              "completeness": float((kept.mean() - blank.mean()) / gap) if abs(gap) > 1e-9 else float("nan"),
              "completeness_without": [float((without[:, j].mean() - blank.mean()) / gap) if abs(gap) > 1e-9
                                       else float("nan") for j in range(k)],
              "deletion": {}, "insertion": {}}
    for name, per_image in orders.items():
        deletion = np.zeros((n, k + 1))
        insertion = np.zeros((n, k + 1))
        deletion[:, 0], insertion[:, 0] = full, blank
        for step in range(1, k + 1):
            deletion[:, step] = probabilities(np.stack(
                [make_patch(img, ~r[o[:step]].any(0), fill) for img, r, o in zip(images, regions, per_image)]))
            insertion[:, step] = probabilities(np.stack(
                [_keep(img, r, o[:step], fill) for img, r, o in zip(images, regions, per_image)]))
        d, i = deletion.mean(0), insertion.mean(0)
        result["deletion"][name] = {"aopc": float(np.mean(d[0] - d[1:])) if k else 0.0, "curve": d.tolist()}
        result["insertion"][name] = {"auc": float(i.mean()), "curve": i.tolist()}
    return result
