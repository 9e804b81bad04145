"""Optional step, evaluate: the paper's evaluation of concepts, smallest sufficient (SSC) and smallest
destroying (SDC) concepts (Ghorbani et al. 2019, Fig. 4).

The scoring images are segmented as the discovery images were (three resolutions) and each of
their superpixels is embedded the same way and assigned to the nearest concept centre (the mean
embedding of the concept's cluster, in the space the clusters were made in), if it lies within
that concept's radius (the largest distance of a cluster member to its centre): a superpixel that
would have joined the concept's cluster. Assigning by centre rather than by CAV keeps the
assignment to what the concepts are (clusters), independent of the random sets.

For k = 1..5 of the concepts that raise the class (highest mean TCAV first), every scoring image
is shown to the model
* with only the top-k concepts' superpixels kept, the rest filled with the neutral colour (SSC);
* with those superpixels filled (SDC);
* and both again with as many random superpixels of the same image instead (the baseline);
recording the share of images the model still assigns to the class (``accuracy``) and the mean
class probability (``probability``). Writes ``evaluation.json``::

    {"layer", "concepts", "n_images", "original": {accuracy, probability},
     "ssc": [{k, accuracy, probability}], "sdc": [...], "ssc_random": [...], "sdc_random": [...],
     "fidelity": {...}, "where": {"concepts", "superpixel_concept"}}

``where`` assigns every scoring superpixel as ``ace explain-images`` does (the nearest of all the
layer's concepts, significant or not, within its radius; -1: none or not significant), by its index
in ``where.concepts`` (the significant concepts): the report paints the scoring images with it.
"""

from __future__ import annotations

import json

import numpy as np

from ace.storage.atomic import write_text
from ace.tasks.algorithm.fidelity import concept_regions, fidelity
from ace.tasks.algorithm.forward import class_outputs
from ace.tasks.params import default
from ace.tasks.algorithm.stats import ConceptScore

MAX_K = 5


def concept_centres(emb: np.ndarray, labels: np.ndarray, clusters: list[int], quantile: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Centre (mean member embedding) and radius of each cluster: the ``quantile`` of its members'
    distances to the centre (1.0, the default: the largest)."""
    centres, radii = [], []
    for c in clusters:
        members = emb[labels == c]
        centre = members.mean(0)
        centres.append(centre)
        radii.append(float(np.quantile(np.linalg.norm(members - centre, axis=1), quantile)))
    return np.asarray(centres, np.float64).reshape(len(clusters), -1), np.asarray(radii)


def assign(emb: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each row, or -1 where it lies outside that centre's radius."""
    if not len(centres):
        return np.full(len(emb), -1)
    emb = np.asarray(emb, np.float64)
    d = np.sqrt(np.maximum((emb ** 2).sum(1)[:, None] - 2 * emb @ centres.T + (centres ** 2).sum(1)[None], 0))
    nearest = d.argmin(1)
    return np.where(d[np.arange(len(emb)), nearest] <= radii[nearest], nearest, -1)


def significant_index(names: list[str], significant: list[str]) -> np.ndarray:
    """Each of a layer's concepts (``names``, significant or not) as its index in ``significant``, -1 if not there."""
    return np.array([significant.index(n) if n in significant else -1 for n in names], np.int64)


def assign_significant(emb: np.ndarray, centres: np.ndarray, radii: np.ndarray, concept_of: np.ndarray) -> np.ndarray:
    """The rule of ``ace explain-images`` and of the report's "where each concept fires": each row
    belongs to the nearest of all the layer's concepts (``centres``, ``radii``; significant or not)
    when it lies within that concept's radius, and is reported as ``concept_of`` of it (its index
    among the significant concepts, see :func:`significant_index`); -1 where none or not significant."""
    nearest = assign(emb, centres, radii) if len(emb) and len(centres) else np.full(len(emb), -1)
    return np.where(nearest >= 0, np.asarray(concept_of, np.int64)[np.maximum(nearest, 0)], -1)


def union_masks(masks: np.ndarray, image_index: np.ndarray, chosen: np.ndarray, n_images: int) -> np.ndarray:
    """(n_images, H, W) union of the chosen superpixels' masks per image."""
    out = np.zeros((n_images, *masks.shape[1:]), bool)
    for r in np.nonzero(chosen)[0]:
        out[image_index[r]] |= masks[r]
    return out


def random_like(image_index: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many randomly drawn superpixels of each image as ``chosen`` has there."""
    out = np.zeros(len(image_index), bool)
    for i in np.unique(image_index):
        rows = np.nonzero(image_index == i)[0]
        n = int(chosen[rows].sum())
        if n:
            out[rng.choice(rows, size=n, replace=False)] = True
    return out


def class_scores(spec, images: np.ndarray, class_idx: int, batch_size: int = default("batch_size")) -> tuple[float, float]:
    """(share of images predicted as the class, mean class probability)."""
    probs, _, hits = class_outputs(spec, images, class_idx, batch_size, spec.precision)
    return float(hits.mean()), float(probs.mean())


def evaluate_concepts(spec, layer: str, images_path: str, segments_path: str, scoring_acts: str, discovery_acts: str,
                      clusters_path: str, concepts_path: str, scores: list[ConceptScore], class_idx: int,
                      fill: tuple[float, float, float], seed: int, out: str) -> str:
    """Write ``evaluation.json`` (see the module docstring) to ``out``; returns ``out``."""
    from ace.storage.tables import ArrayTable
    from ace.tasks.algorithm.cluster import read_concepts
    from ace.tasks.algorithm.images import read_images
    from ace.tasks.algorithm.patches import make_patch
    from ace.tasks.algorithm.superpixels import read_masks

    by_name = {s.concept: s for s in scores if s.layer == layer}
    concepts = {c.name: c for c in read_concepts(concepts_path)}
    raising = [n for n, s in by_name.items() if s.significant and s.direction == "raises" and n in concepts]
    labels = np.asarray(ArrayTable(clusters_path).read("label"))
    centres, radii = concept_centres(np.asarray(ArrayTable(discovery_acts).read("mean"), np.float64), labels,
                                     [concepts[n].cluster for n in raising])
    assigned = assign(np.asarray(ArrayTable(scoring_acts).read("mean")), centres, radii)
    masks, image_index = read_masks(segments_path)
    # best first: highest mean TCAV; among equal scores, the concept found in more scoring images
    coverage = [len(np.unique(image_index[assigned == j])) for j in range(len(raising))]
    order = sorted(range(len(raising)), key=lambda j: (-by_name[raising[j]].tcav_mean, -coverage[j],
                                                       by_name[raising[j]].p_value))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    assigned = np.where(assigned >= 0, rank[np.maximum(assigned, 0)], -1)  # superpixels by their concept's rank
    order = order[:MAX_K]
    raising = [raising[j] for j in order]
    images = read_images(images_path)
    rng = np.random.default_rng(seed)
    acc, prob = class_scores(spec, images, class_idx)
    result = {"layer": layer, "concepts": raising, "n_images": int(len(images)),
              "assignment": "nearest concept centre within the concept's radius",
              "assigned_superpixels": [int((assigned == j).sum()) for j in range(len(raising))],
              "images_with_concept": [coverage[j] for j in order],
              "original": {"accuracy": acc, "probability": prob},
              "ssc": [], "sdc": [], "ssc_random": [], "sdc_random": []}
    for k in range(1, len(raising) + 1):
        chosen = (assigned >= 0) & (assigned < k)
        for suffix, rows in (("", chosen), ("_random", random_like(image_index, chosen, rng))):
            keep = union_masks(masks, image_index, rows, len(images))
            for name, kept in (("ssc", keep), ("sdc", ~keep)):
                a, p = class_scores(spec, make_patch(images, kept, fill), class_idx)
                result[name + suffix].append({"k": k, "accuracy": a, "probability": p})
    # completeness and C-Deletion / C-Insertion over every significant concept of the layer
    significant = [n for n, s in by_name.items() if s.significant and n in concepts]
    discovery = np.asarray(ArrayTable(discovery_acts).read("mean"), np.float64)
    scoring = np.asarray(ArrayTable(scoring_acts).read("mean"))
    centres, radii = concept_centres(discovery, labels, [concepts[n].cluster for n in significant])
    regions = concept_regions(masks, image_index, assign(scoring, centres, radii), len(images), len(significant))
    # where each significant concept fires, by the rule of ace explain-images: the report paints the
    # scoring images with it
    every = list(concepts.values())
    centres, radii = concept_centres(discovery, labels, [c.cluster for c in every])
    concept_of = significant_index([c.name for c in every], significant)
    result["where"] = {"concepts": significant,
                       "superpixel_concept": assign_significant(scoring, centres, radii, concept_of).tolist()}
    result["fidelity"] = {"concepts": significant, **fidelity(
        lambda batch: class_outputs(spec, batch, class_idx, default("batch_size"), spec.precision)[0], images, regions,
        [by_name[n].tcav_mean for n in significant], fill, seed)}
    write_text(out, json.dumps(result, indent=1))
    return out


def evaluation_lines(ev: dict) -> list[str]:
    """The evaluation as text lines: per k, the class accuracy with only the top-k concepts kept (SSC)
    and with them removed (SDC), random superpixels of the same number in brackets."""
    lines = [f"SSC/SDC on {ev['n_images']} scoring images (layer {ev['layer']}; the model predicts the class on "
             f"{ev['original']['accuracy']:.0%} of them as they are); in brackets: as many random superpixels"]
    for s, d, sr, dr in zip(ev["ssc"], ev["sdc"], ev["ssc_random"], ev["sdc_random"]):
        lines.append(f"  top {s['k']}: only these kept {s['accuracy']:.0%} ({sr['accuracy']:.0%}), "
                     f"these removed {d['accuracy']:.0%} ({dr['accuracy']:.0%}); class probability "
                     f"{s['probability']:.2f} ({sr['probability']:.2f}) / {d['probability']:.2f} ({dr['probability']:.2f})")
    if not ev["ssc"]:
        lines.append("  no significant concept raises the class: nothing to evaluate")
    fid = ev.get("fidelity")
    if fid:
        lines.append(f"Completeness of the {len(fid['concepts'])} significant concepts: {fid['completeness']:.3f} "
                     f"(class probability {fid['concepts_only']:.3f} with only them kept, {fid['probability']:.3f} whole, "
                     f"{fid['blank']:.3f} blank)")
        lines.append("  C-Deletion AOPC by order: " + ", ".join(f"{o} {d['aopc']:.3f}" for o, d in fid["deletion"].items())
                     + "; C-Insertion AUC: " + ", ".join(f"{o} {d['auc']:.3f}" for o, d in fid["insertion"].items()))
    return lines
