"""A network's fully connected layers applied as convolutions: its class score map over an image of any size.

Dense evaluation (Simonyan & Zisserman 2014, section 3.2; Sermanet et al. 2014): "the first fully-connected
layer is converted to a 7x7 conv. layer, the last two FC layers to 1x1 conv. layers", the whole image is fed
at a test scale Q, and the class score map is averaged over its positions. The weights are those of the
trained network, reshaped, not retrained: each Linear here is the same parameter viewed as a convolution
kernel, so the dense form shares the network's parameters and always scores its current weights.

At the design input (224 px for AlexNet, ZFNet and VGG-16) the last convolutional map is exactly the first
fully connected layer's input, the score map is 1x1 and the logits are the network's own. ResNet's global
average pool followed by its fc layer already is the mean of the fc layer applied at every position (both are
linear), so its score map, averaged, equals its logits at any size.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from .alexnet import _FlatConvNet


class LinearAsConv(nn.Module):
    """``linear`` applied as a ``kernel`` x ``kernel`` convolution over ``channels`` maps: its weight matrix
    (out, channels * kernel * kernel, in the channel-major order ``flatten`` gives) viewed as (out, channels,
    kernel, kernel). The Linear is referenced, not copied."""

    def __init__(self, linear: nn.Linear, channels: int, kernel: int) -> None:
        super().__init__()
        if linear.in_features != channels * kernel * kernel:
            raise ValueError(f"a Linear of {linear.in_features} inputs is not a {kernel}x{kernel} convolution over "
                             f"{channels} maps")
        self.linear, self.channels, self.kernel = linear, channels, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.linear.weight.view(self.linear.out_features, self.channels, self.kernel, self.kernel)
        return F.conv2d(x, weight, self.linear.bias)


def _head(layers, channels: int, kernel: int) -> list[nn.Module]:
    """The classifier's layers with the first Linear as a ``kernel`` x ``kernel`` convolution and the others as
    1x1 ones; flatten goes (the maps stay maps), activations and dropout stay."""
    converted = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            converted.append(LinearAsConv(layer, channels, kernel))
            channels, kernel = layer.out_features, 1
        elif not isinstance(layer, nn.Flatten):
            converted.append(layer)
    return converted


def fully_convolutional(net: nn.Module) -> nn.Module:
    """The network as a map from an image of any size (at least its design size) to a class score map
    (N, classes, h, w), sharing ``net``'s parameters.

    Raises:
        ValueError: for a network without a dense form here (LeNet-5, evaluated on its 32x32 field; one tower of
            the two-GPU split, whose other half lives in another process).
    """
    net = getattr(net, "_orig_mod", net)  # torch.compile's wrapper: the network it wraps
    if isinstance(net, _FlatConvNet):  # AlexNet, ZFNet: fc6 reads pool5's 256 maps of 6 x 6
        children = list(net.children())
        first_fc = next(i for i, layer in enumerate(children) if isinstance(layer, (nn.Flatten, nn.Linear)))
        return nn.Sequential(*children[:first_fc], *_head(children[first_fc:], 256, 6))
    if isinstance(net, (tvm.VGG, tvm.AlexNet)):  # features, an adaptive pool that is the identity at 224, classifier
        side = net.avgpool.output_size
        side = side if isinstance(side, int) else side[0]
        first = next(layer for layer in net.classifier if isinstance(layer, nn.Linear))
        return nn.Sequential(net.features, *_head(net.classifier, first.in_features // side ** 2, side))
    if isinstance(net, tvm.ResNet):
        body = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
        return nn.Sequential(*body, LinearAsConv(net.fc, net.fc.in_features, 1))
    raise ValueError(f"{type(net).__name__} has no dense form here: dense and multi-scale evaluation are the "
                     f"protocols of AlexNet, ZFNet, VGG and ResNet (LeNet-5 was evaluated on its 32x32 field: "
                     f"protocol=center)")
