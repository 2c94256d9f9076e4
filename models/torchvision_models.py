"""Models whose exact architecture torchvision already ships: built on its builders, not rewritten."""

from torch import nn
from torchvision import models as tvm

from .registry import register_model


def _first_conv_for(model: nn.Module, attr: str, in_channels: int) -> None:
    """Replaces the first convolution when the input is not RGB (e.g. grayscale digits)."""
    if in_channels == 3:
        return
    parent_name, _, child_name = attr.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old: nn.Conv2d = getattr(parent, child_name)
    setattr(parent, child_name, nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                                          old.padding, bias=old.bias is not None))


@register_model
def alexnet_onetower(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """The one-tower AlexNet of "One weird trick" (Krizhevsky 2014) that torchvision ships: 61,100,840 params."""
    model = tvm.alexnet(weights=None, num_classes=num_classes)
    _first_conv_for(model, "features.0", in_channels)
    return model


@register_model
def vgg16(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """VGG-16, configuration D (Simonyan & Zisserman 2014): 138,357,544 params."""
    model = tvm.vgg16(weights=None, num_classes=num_classes)
    _first_conv_for(model, "features.0", in_channels)
    return model


def _resnet(builder, num_classes: int, in_channels: int) -> nn.Module:
    # torchvision is "ResNet v1.5": the stride 2 of a downsampling bottleneck sits on the 3x3 conv,
    # where the paper (v1) put it on the first 1x1. Same parameter count; slightly better accuracy.
    model = builder(weights=None, num_classes=num_classes)
    _first_conv_for(model, "conv1", in_channels)
    return model


@register_model
def resnet18(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-18 (He et al. 2015): 11,689,512 params."""
    return _resnet(tvm.resnet18, num_classes, in_channels)


@register_model
def resnet34(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-34 (He et al. 2015): 21,797,672 params."""
    return _resnet(tvm.resnet34, num_classes, in_channels)


@register_model
def resnet50(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-50 (He et al. 2015), torchvision's v1.5: 25,557,032 params."""
    return _resnet(tvm.resnet50, num_classes, in_channels)


@register_model
def resnet101(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-101 (He et al. 2015), torchvision's v1.5: 44,549,160 params."""
    return _resnet(tvm.resnet101, num_classes, in_channels)


@register_model
def resnet152(*, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-152 (He et al. 2015), torchvision's v1.5: 60,192,808 params."""
    return _resnet(tvm.resnet152, num_classes, in_channels)
