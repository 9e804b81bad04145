"""Forward passes through any ``nn.Module``: the model's input from uint8 images, a layer's
activations and the class-logit gradients at any layers.

Both use forward hooks on ``model.named_modules()``, so any ``nn.Module`` works (the original
"cut" the model into two halves, which only works for plain chains of top-level children).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ace.tasks.models.hooks import capture_layers, first_tensor as _first_tensor
from ace.tasks.models.loader import ModelSpec, model_device, output_logits
from ace.tasks.models.precision import autocast


def to_input(batch: np.ndarray, spec: ModelSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) on ``device``."""
    x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def layer_activations(model: nn.Module, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for input ``x``, stopping the forward pass once all are captured."""
    with torch.inference_mode():
        return capture_layers(model, layers, x, lambda t: t.detach().clone(memory_format=torch.contiguous_format))


class TorchActivations:
    """PyTorch's activation passes with the interface of
    :class:`ace.tasks.models.backends.OpenVINOActivations`: ``__call__(images)`` gives the activations
    of ``layers`` for a uint8 (N, H, W, 3) batch (under the run's precision), ``stream(batches)`` the
    same for many batches, in order."""

    def __init__(self, model: nn.Module, spec: ModelSpec, layers: list[str]) -> None:
        self.model, self.spec, self.layers = model, spec, list(layers)
        self.device = model_device(model)

    def __call__(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        with autocast(self.spec.precision, self.device):
            return layer_activations(self.model, self.layers, to_input(images, self.spec, self.device))

    def stream(self, batches):
        for batch in batches:
            yield self(batch)


def activation_passes(model: nn.Module, spec: ModelSpec, layers: list[str], compiled_dir: str | None):
    """What runs the activation passes of ``layers``: the model converted for OpenVINO where
    ``spec.backend`` says so and it converts (:func:`ace.tasks.models.backends.activation_runner`),
    else :class:`TorchActivations`. Either takes uint8 images as decoded."""
    from ace.tasks.models.backends import activation_runner

    return activation_runner(model, spec, layers, compiled_dir) or TorchActivations(model, spec, layers)


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


def class_outputs(spec: ModelSpec, images: np.ndarray, class_idx: int, batch_size: int, precision: str = "fp32"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class probability, class logit, predicted as the class) of each uint8 image, the passes run in
    ``precision``."""
    from ace.tasks.models.loader import model_device, using_model
    from ace.tasks.models.precision import autocast

    probs, logits, hits = [], [], []
    with using_model(spec) as model, torch.inference_mode():
        device = model_device(model)
        for start in range(0, len(images), batch_size):
            with autocast(precision, device):
                out = output_logits(model(to_input(images[start:start + batch_size], spec, device))).float()
            probs.append(torch.softmax(out, 1)[:, class_idx].cpu().numpy())
            logits.append(out[:, class_idx].cpu().numpy())
            hits.append((out.argmax(1) == class_idx).cpu().numpy())
    return np.concatenate(probs), np.concatenate(logits), np.concatenate(hits)
