"""The model zoo: plain ``nn.Module`` networks behind a registry (no Lightning here).

>>> from models import create_model, list_models
>>> net = create_model("alexnet", num_classes=1000)
"""

from . import alexnet, lenet, torchvision_models  # noqa: F401  (registers the builders)
from .registry import create_model, input_shape, list_models, register_model
from .summary import LayerRow, format_table, layer_table, trainable_params

__all__ = ["create_model", "input_shape", "list_models", "register_model", "LayerRow", "format_table",
           "layer_table", "trainable_params"]
