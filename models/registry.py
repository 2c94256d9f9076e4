"""Name -> builder registry, in the style of torchvision's ``register_model`` and timm's ``create_model``."""

from typing import Callable

from torch import nn

from .catalogue import CATALOGUE, natural_order

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Registers a builder under its function name; what it is (its paper, input shape, parameter count)
    is its entry in ``models/catalogue.py``.

    Raises:
        ValueError: if a builder of that name is already registered, or has no catalogue entry.
    """
    name = builder.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    if name not in CATALOGUE:
        raise ValueError(f"model {name!r} has no entry in models/catalogue.py (its paper, input shape and "
                         f"parameter count): add one")
    _MODELS[name] = builder
    return builder


def input_shape(name: str) -> tuple[int, int, int]:
    """The (channels, height, width) input a registered model was designed for."""
    _check_name(name)
    return CATALOGUE[name].input_shape


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")


def list_models() -> list[str]:
    """Returns the registered model names in natural order (resnet18 before resnet101)."""
    return sorted(_MODELS, key=natural_order)


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
