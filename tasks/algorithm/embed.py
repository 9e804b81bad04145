"""Step 3, embed: the activations of every superpixel and random image at the chosen layers, and the
class-logit gradients of the scoring images (TCAV's), in batches, written as Parquet tables.

``--embedding crop`` (ACE's) runs one forward pass per superpixel image; ``--embedding pooled``
(:mod:`ace.tasks.algorithm.pooled_embedding`) one per image.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.models.layouts import channel_mean, grid_sum
from ace.tasks.algorithm.forward import activation_passes, class_logit_gradients, to_input
from ace.tasks.algorithm.pooled_embedding import write_pooled_superpixels
from ace.tasks.algorithm.sources import ImageTable, Superpixels, prefetch
from ace.tasks.models.loader import ModelSpec, check_model_layers, model_device, using_model
from ace.tasks.models.precision import to_storage


def write_activations(spec: ModelSpec, layers: list[str], source, embedding: str, out: list[str],
                      batch_size: int, compiled_dir: str | None = None) -> list[str]:
    """Embed every image of ``source`` (an :mod:`ace.tasks.algorithm.sources` description); one table per layer
    with the full activation (``act``, as computed: bf16/fp16 under reduced precision) and its
    channel mean (``mean``, float32). Batches are made in a background thread while the model runs.

    ``embedding="pooled"`` (``--embedding pooled``, see :mod:`ace.tasks.algorithm.pooled_embedding`): superpixels are pooled from their
    image's feature map, images stored as their spatial mean (``act`` = ``mean``, (N, C)).

    ``spec.backend == "openvino"``: the passes run in the model converted into ``compiled_dir``
    (:mod:`ace.tasks.models.backends`)."""
    outs, pooled = out, embedding == "pooled"
    if pooled and isinstance(source, Superpixels):
        return write_pooled_superpixels(spec, layers, source.images_path, source.segments_path, outs, batch_size,
                                        compiled_dir)
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(using_model(spec))
        check_model_layers(model, layers)
        passes = activation_passes(model, spec, layers, compiled_dir)
        writers = [stack.enter_context(TableWriter(o, {"layer": l, "model": spec.key, "precision": spec.precision}))
                   for l, o in zip(layers, outs)]
        # batches made on a background thread; OpenVINO keeps them in flight while results are written
        for acts in passes.stream(prefetch(source.batches(batch_size))):
            for layer, w in zip(layers, writers):
                a = acts[layer]
                mean = channel_mean(a.float(), spec.layout(layer, tuple(a.shape))).cpu().numpy().astype(np.float32)
                w.append(act=mean if pooled else to_storage(a), mean=mean)
    return outs


def _warn_if_constant(g: np.ndarray, layer: str) -> None:
    unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    if float((unit @ unit.T).min()) > 0.999:
        warnings.warn(f"--embedding pooled at {layer!r}: the class-logit gradient summed over the grid is the same "
                      "for every image (the layer feeds global pooling and a linear head?), so every TCAV score "
                      "is 0 or 1: choose an earlier layer or --embedding crop")


# images per backward pass (each holds the graph from the first layer on). EfficientNet-Lite0 at
# _blocks.10, 50 images: 8 -> 1.8-2.1 s and +180-200 MB above the step's start, 4 -> 1.5-1.7 s and
# +120-130 MB, 2 -> 2.1 s and +85 MB; the gradients are bit-identical (each image's own pass)
GRADIENT_BATCH = 4


def write_gradients(spec: ModelSpec, layers: list[str], images_path: str, class_idx: int, embedding: str,
                    out: list[str]) -> list[str]:
    """Class-logit gradients of every image of an images table, one table per layer. ``embedding="pooled"``:
    summed over the spatial grid (the derivative along a spatially constant direction, (N, C))."""
    outs, pooled, batch_size = out, embedding == "pooled", GRADIENT_BATCH
    meta = {"model": spec.key, "class_idx": class_idx}
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(using_model(spec))
        check_model_layers(model, layers)
        writers = [stack.enter_context(TableWriter(o, {**meta, "layer": l})) for l, o in zip(layers, outs)]
        for data in ImageTable(images_path).batches(batch_size):
            x = to_input(data, spec, model_device(model))
            grads, logits = class_logit_gradients(model, layers, x, class_idx)
            pred = logits.argmax(1).astype(np.int64)
            for layer, w in zip(layers, writers):
                g = grads[layer].astype(np.float32)
                if pooled and g.ndim > 2:
                    g = np.ascontiguousarray(grid_sum(g, spec.layout(layer, g.shape)))
                if pooled and len(g) > 1:
                    _warn_if_constant(g, layer)
                w.append(grad=g, predicted=pred,
                         class_logit=logits[:, class_idx].astype(np.float32))
    return outs


def predicted_share(grads_path: str, class_idx: int) -> float:
    """Share of the scoring images the model predicts as ``class_idx`` (from a gradients table)."""
    pred = np.asarray(ArrayTable(grads_path).read("predicted"))
    return float(np.mean(pred == class_idx)) if len(pred) else float("nan")
