"""Weights in: a network started from a state dict, one of this project's checkpoints, or torchvision's
published ImageNet weights.

The networks torchvision ships (``alexnet_onetower``, ``vgg16``, ``resnet18`` ... ``resnet152``) are
built on its builders, so their state dicts are torchvision's, key for key. Loading is strict and
``weights_only``: a file cannot run code, and a key or shape that does not fit is refused with its
name, never skipped.
"""

from pathlib import Path

import torch
from torch import nn

# this project's name -> torchvision's builder, for the networks torchvision publishes ImageNet weights of
TORCHVISION_NAMES = {"alexnet_onetower": "alexnet", "vgg16": "vgg16", "resnet18": "resnet18",
                     "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
                     "resnet152": "resnet152"}
NET_PREFIX = "net."  # the LightningModule holds the network as ``self.net``


class WeightsError(ValueError):
    """Weights that cannot be loaded into the network (the message says which keys, shapes or file)."""


def torchvision_weights(model_name: str):
    """torchvision's ImageNet weights of a network: the first (``IMAGENET1K_V1``) ones, trained with the
    papers' era of recipe and evaluated at shorter side 256, centre 224, as this project's ``center``.

    Raises:
        WeightsError: for a network torchvision does not publish weights of.
    """
    if model_name not in TORCHVISION_NAMES:
        raise WeightsError(f"torchvision publishes no ImageNet weights for model={model_name}; it does for "
                           f"{', '.join(TORCHVISION_NAMES)} (alexnet_onetower is torchvision's AlexNet)")
    from torchvision.models import get_model_weights

    return get_model_weights(TORCHVISION_NAMES[model_name]).IMAGENET1K_V1


def _torchvision_state_dict(model_name: str) -> dict:
    """The weights' file from torch hub's cache, downloaded into it when the machine is online."""
    weights = torchvision_weights(model_name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(cached), progress=True)
        except Exception as e:  # offline: urllib's URLError, socket timeouts, proxies refusing
            raise WeightsError(f"model.weights=torchvision: {cached} is not cached and cannot be downloaded "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}); fetch {weights.url} "
                               f"on a machine that is online and put it at {cached} (torch hub's cache; TORCH_HOME "
                               f"moves it)") from e
    return torch.load(cached, map_location="cpu", weights_only=True)


def read_state_dict(source: str | Path, model_name: str) -> dict:
    """The network's state dict from ``source``: ``torchvision``, a file of a plain state dict (torchvision's
    format for the networks it ships), or one of this project's checkpoints (its ``net.`` weights)."""
    if str(source) == "torchvision":
        return _torchvision_state_dict(model_name)
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"model.weights={source}: no such file; give a state dict (.pth), one of this project's "
                           f"checkpoints (.ckpt) or `torchvision`")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for code, RuntimeError/EOFError for a broken file
        raise WeightsError(f"model.weights={path} cannot be loaded as tensors and plain data (weights_only): "
                           f"{str(e).splitlines()[0]}") from e
    if isinstance(loaded, dict) and "state_dict" in loaded and "hyper_parameters" in loaded:  # our checkpoint
        theirs = loaded["hyper_parameters"].get("model_name")
        if theirs != model_name:
            raise WeightsError(f"model.weights={path} is a checkpoint of model={theirs}, not model={model_name}")
        # (a checkpoint of a compiled run from before they were written with the plain network's names)
        return {k[len(NET_PREFIX):].removeprefix("_orig_mod."): v for k, v in loaded["state_dict"].items()
                if k.startswith(NET_PREFIX)}
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise WeightsError(f"model.weights={path} holds no state dict (a mapping of names to tensors)")
    return loaded


def load_weights(net: nn.Module, model_name: str, source: str | Path) -> None:
    """Loads ``source`` into ``net`` strictly.

    Raises:
        WeightsError: naming the missing and unexpected keys and the shapes that differ (or the file).
    """
    state = read_state_dict(source, model_name)
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} (the network's: {tuple(own[k].shape)})"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                    for label, items in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes))
                    if items]
        raise WeightsError(f"model.weights={source} does not fit model={model_name} ({'; '.join(problems)}); give "
                           f"weights of this network with the same number of classes (data.num_classes)")
    net.load_state_dict(state, strict=True)
