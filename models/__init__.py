"""The model zoo: plain ``nn.Module`` networks behind a registry (no Lightning here).

>>> from models import create_model, list_models
>>> net = create_model("alexnet", num_classes=1000)

The names below are imported on first use (with the builders, which need torch), so that ``python -m models``
lists the zoo from ``models/catalogue.py`` in a fraction of a second.
"""

import importlib

_WHERE = {"create_model": "registry", "input_shape": "registry", "list_models": "registry",
          "register_model": "registry", "LayerRow": "summary", "format_table": "summary", "layer_table": "summary",
          "trainable_params": "summary"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import alexnet, lenet, torchvision_models  # noqa: F401  (registers the builders)

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
