"""Name -> builder registry, in the style of torchvision's ``register_model`` and timm's ``create_model``."""

import re
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {}


def register_model(fn=None, *, input_shape: tuple[int, int, int] = (3, 224, 224)):
    """Registers a builder under its function name, with the input shape (C, H, W) it was designed for.

    Use as ``@register_model`` or ``@register_model(input_shape=(1, 32, 32))``.

    Raises:
        ValueError: if a builder of that name is already registered.
    """

    def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        _INPUT_SHAPES[name] = tuple(input_shape)
        return builder

    return register(fn) if fn is not None else register


def input_shape(name: str) -> tuple[int, int, int]:
    """The (channels, height, width) input a registered model was designed for."""
    _check_name(name)
    return _INPUT_SHAPES[name]


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")


def list_models() -> list[str]:
    """Returns the registered model names in natural order (resnet18 before resnet101)."""
    return sorted(_MODELS, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def create_model(name: str, *, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Builds a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the output layer.
        **kwargs: passed on to the builder.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    _check_name(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return _MODELS[name](num_classes=num_classes, **kwargs)
