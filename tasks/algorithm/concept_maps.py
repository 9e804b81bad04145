"""Explaining one image with a class's concepts: where each concept is, and how much it weighs.

The image is segmented as the discovery images were (the run's ``--superpixel_method``, three
resolutions, de-duplicated) at the model's input size, and each superpixel is embedded the same way
(``--embedding crop``: resized to the input, one pass each; ``pooled``: pooled from the image's
feature map). A superpixel belongs to a concept when its embedding lies nearest to that concept's
centre of all the layer's concepts, significant or not, and within its radius (its farthest
member): a superpixel nearer to a concept that is not significant belongs to none.

The map paints each pixel with the concept of the finest assigned superpixel covering it (the
three resolutions overlap: finer superpixels are painted over coarser ones, so a small part inside
a large concept region keeps its own concept); pixels of no assigned superpixel stay 0. At the
image's own size the map is the input-size map resized back (nearest neighbour; under
``center_crop`` preprocessing the pixels outside the crop stay 0).

Each concept's weight in the image:

* ``occlusion``: the class probability of the image minus that with the concept's pixels filled
  with the neutral colour (positive: the concept raises the class here); ``occlusion_logit`` the
  same for the class logit; ``kept``: the class probability with only the concept's pixels kept;
* ``gradient``: the class-logit gradient at the layer projected on the concept's CAV (the unit mean
  of its CAVs over the random sets), times the concept's area share: TCAV's directional derivative
  for this image, weighted by how much of the image the concept covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ace.tasks.algorithm.evaluate import assign_significant
from ace.tasks.algorithm.forward import activation_passes, class_logit_gradients, class_outputs, to_input
from ace.tasks.algorithm.patches import make_patch, make_superpixel
from ace.tasks.algorithm.pooled_embedding import mask_weights, pool_feature_map
from ace.tasks.algorithm.superpixels import superpixel_masks
from ace.tasks.models.layouts import channel_mean, grid_sum, to_grid
from ace.tasks.models.loader import ModelSpec, model_device, using_model


def embed_superpixels(spec: ModelSpec, layer: str, image: np.ndarray, masks: np.ndarray, embedding: str,
                      fill: tuple[float, float, float], batch_size: int, compiled_dir: str | None = None) -> np.ndarray:
    """(K, C) float32 channel-mean embeddings of an image's superpixels, as the run embedded its own
    (on the run's backend: ``compiled_dir`` holds its converted model)."""
    if not len(masks):
        return np.zeros((0, 0), np.float32)
    with using_model(spec) as model:
        passes = activation_passes(model, spec, [layer], compiled_dir)
        if embedding == "pooled":
            act = passes(image[None])[layer]
            fmap = to_grid(act.float(), spec.layout(layer, tuple(act.shape)))
            weights = mask_weights(masks, tuple(fmap.shape[2:]))
            return pool_feature_map(fmap.expand(len(masks), *fmap.shape[1:]), weights).astype(np.float32)
        batches = (np.stack([make_superpixel(image, m, spec.input_size, fill) for m in masks[start:start + batch_size]])
                   for start in range(0, len(masks), batch_size))
        out = []
        for acts in passes.stream(batches):  # one OpenVINO request queue for all the image's batches
            act = acts[layer]
            out.append(channel_mean(act.float(), spec.layout(layer, tuple(act.shape))).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def paint(masks: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """(H, W) uint8 map: ``j + 1`` where the finest superpixel assigned to concept ``j`` covers the
    pixel, 0 where none does (superpixels painted largest first, so finer ones win)."""
    label = np.zeros(masks.shape[1:], np.uint8)
    for k in np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable"):
        if assigned[k] >= 0:
            label[masks[k]] = assigned[k] + 1
    return label


def to_original_size(label: np.ndarray, original: tuple[int, int], resize: str) -> np.ndarray:
    """The input-size map ``label`` at the image's own (width, height), undoing the preprocessing's
    resize (nearest neighbour); outside a centre crop, 0."""
    w, h = original
    size = label.shape[0]
    im = Image.fromarray(label)
    if resize == "squash":
        return np.asarray(im.resize((w, h), Image.NEAREST))
    short = round(size * 256 / 224)
    scale = short / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (rw - size) // 2, (rh - size) // 2
    out = np.zeros((h, w), np.uint8)
    x0, y0 = round(left * w / rw), round(top * h / rh)
    x1, y1 = round((left + size) * w / rw), round((top + size) * h / rh)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = np.asarray(im.resize((x1 - x0, y1 - y0), Image.NEAREST))
    return out


def layer_gradient(spec: ModelSpec, layer: str, image: np.ndarray, class_idx: int, embedding: str) -> np.ndarray:
    """The class-logit gradient at ``layer`` (flattened; summed over the grid under ``pooled``), fp32."""
    with using_model(spec) as model:
        grads, _ = class_logit_gradients(model, [layer], to_input(image[None], spec, model_device(model)), class_idx)
    g = grads[layer].astype(np.float32)
    if embedding == "pooled" and g.ndim > 2:
        g = np.ascontiguousarray(grid_sum(g, spec.layout(layer, g.shape)))
    return g.reshape(-1)


@dataclass(frozen=True)
class ConceptWeight:
    """One concept's presence and weight in one image."""

    label: int  # its value in the map (1-based)
    concept: str
    direction: str  # of the concept for the class (its TCAV test): raises / lowers
    area_share: float  # share of the image's pixels painted with it
    occlusion: float  # class probability minus that with the concept filled (> 0: it raises the class here)
    occlusion_logit: float
    kept: float  # class probability with only the concept kept
    gradient: float  # (class-logit gradient . CAV) x area share


def explain_image(spec: ModelSpec, layer: str, image: np.ndarray, method: str, embedding: str,
                  fill: tuple[float, float, float], class_idx: int, names: list[str], directions: list[str],
                  centres: np.ndarray, radii: np.ndarray, concept_of: np.ndarray, cavs: np.ndarray, batch_size: int,
                  compiled_dir: str | None = None) -> tuple[np.ndarray, list[ConceptWeight], dict[str, float]]:
    """The concept map (input size, uint8: 0 none, j + 1 concept ``names[j]``) of a uint8 image at the
    model's input size (a superpixel is concept ``concept_of[i]`` when cluster ``i`` has the nearest
    centre and it lies within that cluster's radius), the weight of every concept present (labels renumbered 1..n in order of
    ``names``), and the image's own class probability and logit."""
    masks, _ = superpixel_masks(image, method)
    emb = embed_superpixels(spec, layer, image, masks, embedding, fill, batch_size, compiled_dir)
    assigned = assign_significant(emb, centres, radii, concept_of)
    full = paint(masks, assigned) if len(masks) else np.zeros(image.shape[:2], np.uint8)
    present = [j for j in range(len(names)) if (full == j + 1).any()]
    label = np.zeros_like(full)
    for new, j in enumerate(present, 1):
        label[full == j + 1] = new
    regions = [label == new for new in range(1, len(present) + 1)]
    variants = [image] + [make_patch(image, ~r, fill) for r in regions] + [make_patch(image, r, fill) for r in regions]
    probs, logits, _ = class_outputs(spec, np.stack(variants), class_idx, batch_size)
    grad = layer_gradient(spec, layer, image, class_idx, embedding) if present else np.zeros(0, np.float32)
    n = len(present)
    weights = []
    for k, (j, region) in enumerate(zip(present, regions)):
        share = float(region.mean())
        weights.append(ConceptWeight(k + 1, names[j], directions[j], share, float(probs[0] - probs[1 + k]),
                                     float(logits[0] - logits[1 + k]), float(probs[1 + n + k]),
                                     float(grad @ cavs[j]) * share))
    return label, weights, {"probability": float(probs[0]), "logit": float(logits[0])}


def write_concept_table(clusters_path: str, superpixel_acts: str, concepts_path: str, cav_paths: list[str],
                        tested: list, layer: str, out: str) -> str:
    """What explaining an image needs of a layer's significant concepts, in one ``.npz`` at ``out``:
    ``names``, ``directions`` and ``cavs`` (each concept's unit mean CAV over the random sets) of the
    significant concepts; ``centres`` and ``radii`` of every concept of the layer, significant or not (in
    the clustering space), and ``concept_of`` (each one's index among the significant ones, or -1)."""
    from ace.storage.atomic import atomic_path
    from ace.storage.tables import ArrayTable
    from ace.tasks.algorithm.cluster import read_concepts
    from ace.tasks.algorithm.evaluate import concept_centres, significant_index

    scores = {s.concept: s for s in tested if s.layer == layer and s.significant}
    every = read_concepts(concepts_path)  # the clusters that passed ACE's filter, significant or not
    concepts = [c for c in every if c.name in scores]
    labels = np.asarray(ArrayTable(clusters_path).read("label"))
    emb = np.asarray(ArrayTable(superpixel_acts).read("mean"), np.float64)
    # the centre of every concept, significant or not: a superpixel belongs to a significant concept only
    # when that concept is the nearest of them all
    clusters = [c.cluster for c in every]
    centres, radii = concept_centres(emb, labels, clusters)
    concept_of = significant_index([c.name for c in every], [c.name for c in concepts])
    sums: dict[str, np.ndarray] = {}
    for path in cav_paths:
        with np.load(path) as z:
            for name, cav in zip(z["names"], z["cavs"]):
                if str(name) in scores:
                    sums[str(name)] = sums.get(str(name), 0) + cav.astype(np.float64)
    dim = next(iter(sums.values())).shape[0] if sums else 0
    cavs = np.stack([sums[c.name] / max(np.linalg.norm(sums[c.name]), 1e-12) for c in concepts]).astype(np.float32) \
        if concepts else np.zeros((0, dim), np.float32)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array([c.name for c in concepts], dtype=str),
                     directions=np.array([scores[c.name].direction for c in concepts], dtype=str),
                     centres=centres, radii=radii, concept_of=concept_of, cavs=cavs)
    return out


def read_concept_table(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
