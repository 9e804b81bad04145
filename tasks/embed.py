"""Step 4 (and the gradients of step 8): activations and class-logit gradients at any layers.

Both use forward hooks on ``model.named_modules()``, so any ``nn.Module`` works (the original
"cut" the model into two halves, which only works for plain chains of top-level children), and
both run in batches.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.caching import ace_task
from ace.tasks.layouts import channel_mean, grid_sum
from ace.tasks.models import ModelSpec, check_layers, model_device, output_logits, using_model
from ace.tasks.precision import autocast, to_storage
from ace.tasks.sources import prefetch


class _Enough(Exception):
    """Raised by a hook once every wanted activation is captured: skips the rest of the network."""


def to_input(batch: np.ndarray, spec: ModelSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) on ``device``."""
    x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"layer output is a {type(out).__name__}, not a tensor")


def layer_activations(model: nn.Module, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for input ``x``, stopping the forward pass once all are captured."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name):
        def hook(_m, _inp, out):
            captured[name] = _first_tensor(out).detach().clone(memory_format=torch.contiguous_format)
            if len(captured) == len(layers):
                raise _Enough

        return hook

    for name in layers:
        handles.append(modules[name].register_forward_hook(hook_for(name)))
    try:
        with torch.inference_mode():
            model(x)
    except _Enough:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [l for l in layers if l not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} were never called in the forward pass")
    return captured


def class_logit_gradients(model: nn.Module, layers: list[str], x: torch.Tensor, class_idx: int
                          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """d logit[class_idx] / d activation, per image, at each layer; and the logits (N, classes).

    The network runs without autograd up to the first hooked layer, whose output becomes the leaf
    the gradients are taken against: no graph (and no saved activations) for the part before it."""
    modules = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name):
        def hook(_m, _inp, out):
            t = _first_tensor(out)
            if not t.requires_grad:  # the first hooked layer (or one on a branch the others do not feed)
                torch.set_grad_enabled(True)
                t = t.detach().requires_grad_(True)
            acts[name] = t
            # later in-place ops must not touch the tensor we differentiate against
            new = t.clone()
            return new if isinstance(out, torch.Tensor) else type(out)((new, *out[1:]))

        return hook

    for name in layers:
        handles.append(modules[name].register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():  # grad mode is switched on by the first hook and restored on exit
            logits = output_logits(model(x))
            grads = torch.autograd.grad(logits[:, class_idx].sum(), [acts[l] for l in layers])
    finally:
        for h in handles:
            h.remove()
    return ({l: g.detach().float().contiguous().cpu().numpy() for l, g in zip(layers, grads)},
            logits.detach().float().cpu().numpy())


def write_activations(spec: ModelSpec, layers: list[str], source, outs: list[str], batch_size: int = 32,
                      pooled: bool = False) -> list[str]:
    """Embed every image of ``source`` (an :mod:`ace.tasks.sources` description); one table per layer
    with the full activation (``act``, as computed: bf16/fp16 under reduced precision) and its
    channel mean (``mean``, float32). Batches are made in a background thread while the model runs.

    ``pooled`` (``--embedding pooled``, see :mod:`ace.tasks.pooled`): superpixels are pooled from their
    image's feature map, images stored as their spatial mean (``act`` = ``mean``, (N, C))."""
    from ace.tasks.sources import Superpixels

    if pooled and isinstance(source, Superpixels):
        from ace.tasks.pooled import write_pooled_superpixels

        return write_pooled_superpixels(spec, layers, source.images_path, source.segments_path, outs, batch_size)
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(using_model(spec))
        check_layers(model, layers)
        device = model_device(model)
        writers = [stack.enter_context(TableWriter(o, {"layer": l, "model": spec.key, "precision": spec.precision}))
                   for l, o in zip(layers, outs)]
        for data in prefetch(source.batches(batch_size)):
            x = to_input(data, spec, device)
            with autocast(spec.precision, device):
                acts = layer_activations(model, layers, x)
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


def write_gradients(spec: ModelSpec, layers: list[str], images_path: str, class_idx: int, outs: list[str],
                    batch_size: int = 8, pooled: bool = False) -> list[str]:
    """Class-logit gradients of every image of an images table, one table per layer. ``pooled``:
    summed over the spatial grid (the derivative along a spatially constant direction, (N, C))."""
    from ace.tasks.sources import ImageTable

    meta = {"model": spec.key, "class_idx": class_idx}
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(using_model(spec))
        check_layers(model, layers)
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


@ace_task("embed")
def embed_task(spec: ModelSpec, layers: list[str], source, pooled: bool, out: list[str], batch_size: int = 32
               ) -> list[str]:
    return write_activations(spec, layers, source, out, batch_size, pooled)


@ace_task("gradients")
def gradients_task(spec: ModelSpec, layers: list[str], images_path: str, class_idx: int, pooled: bool, out: list[str]
                   ) -> list[str]:
    return write_gradients(spec, layers, images_path, class_idx, out, pooled=pooled)


def predicted_share(grads_path: str, class_idx: int) -> float:
    """Share of the scoring images the model predicts as ``class_idx`` (from a gradients table)."""
    pred = np.asarray(ArrayTable(grads_path).read("predicted"))
    return float(np.mean(pred == class_idx)) if len(pred) else float("nan")
