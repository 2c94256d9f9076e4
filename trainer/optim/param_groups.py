"""Weight decay by kind of parameter: the modern recipes exempt the normalisation layers' scales and shifts
(torchvision's ResNet-50 V2 recipe: ``--norm-weight-decay 0.0``), some also the biases (He et al. 2019, "Bag of
tricks for image classification", section 3.1: "no bias decay").
The papers reproduced here decay every weight: both exemptions are off by default (``optim.norm_weight_decay`` and
``optim.bias_weight_decay``: null)."""

import torch

# the layers torchvision counts as normalisation (torchvision.ops._utils.split_normalization_params)
NORMS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.LocalResponseNorm)


def parameter_groups(net: torch.nn.Module, norm_weight_decay: float | None = None,
                     bias_weight_decay: float | None = None) -> list[dict]:
    """``net``'s parameters for an optimizer, grouped by their weight decay: first every parameter the optimizer's
    own ``weight_decay`` applies to, then, when its value is given, the normalisation layers' (their own decay),
    then the other layers' biases. The groups are always these, in this order, even empty (a checkpoint's optimizer
    state then matches its config whatever the network: ``run/resume.py`` compares their number)."""
    kinds: dict[str, list] = {"decayed": [], "norm": [], "bias": []}
    seen: set[int] = set()
    for module in net.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if norm_weight_decay is not None and isinstance(module, NORMS):
                kinds["norm"].append(param)
            elif bias_weight_decay is not None and name == "bias":
                kinds["bias"].append(param)
            else:
                kinds["decayed"].append(param)
    return [{"params": kinds["decayed"]},
            *([{"params": kinds["norm"], "weight_decay": norm_weight_decay}] if norm_weight_decay is not None else []),
            *([{"params": kinds["bias"], "weight_decay": bias_weight_decay}] if bias_weight_decay is not None else [])]


def group_count(norm_weight_decay: float | None, bias_weight_decay: float | None) -> int:
    """How many groups ``parameter_groups`` makes for these settings."""
    return 1 + (norm_weight_decay is not None) + (bias_weight_decay is not None)
