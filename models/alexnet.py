"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as the two-GPU network, and ZFNet (Zeiler & Fergus 2013).

The GTX 580 split is expressed in ONE module with grouped convolutions: channels [0, C/2) are
GPU 0's tower and [C/2, C) GPU 1's. conv2, conv4 and conv5 read only their own tower
(``groups=2``); conv3 and the fully connected layers read both. LRN windows stay inside one
tower, as each GPU normalised only the maps it held. The layer sizes, initialisation and the
224/227 quirk follow the 2012 code (cuda-convnet ``layers-145.cfg``); see
``docs/papers.md``.
"""

import torch
from torch import nn

from .registry import register_model

TOWERS = 2


class TowerLRN(nn.LocalResponseNorm):
    """LocalResponseNorm whose window never crosses from one GPU tower's maps into the other's."""

    def __init__(self, towers: int = TOWERS) -> None:
        # cuda-convnet's size 5, k 2, alpha 1e-4 (divided by size), beta 0.75 is exactly torch's convention.
        super().__init__(size=5, alpha=1e-4, beta=0.75, k=2.0)
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = super().forward(x.reshape(n * self.towers, c // self.towers, h, w))
        return y.reshape(n, c, h, w)


def _init_paper(module: nn.Module, std: float, bias: float) -> None:
    nn.init.normal_(module.weight, mean=0.0, std=std)
    nn.init.constant_(module.bias, bias)


class _FlatConvNet(nn.Module):
    """A network whose layers are its attributes in call order (so the layer table reads like the paper)."""

    def _add_fc_head(self, num_classes: int, dropout: float) -> None:
        # fc6 and fc7 read all 9216 / 4096 inputs (across both GPUs); dropout 0.5 on their outputs.
        self.flatten = nn.Flatten()
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class AlexNet(_FlatConvNet):
    """The original two-tower AlexNet, 60,965,224 parameters for 1000 classes, on 224x224 input."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        # cuda-convnet rounds the conv output size up and reads outside the image as zero, which for a
        # 224 crop is 3 px of implicit padding on the right and bottom: 227 -> 55x55 (PyTorch alone gives 54).
        self.pad = nn.ZeroPad2d((0, 3, 0, 3))
        self.conv1 = nn.Conv2d(in_channels, 96, kernel_size=11, stride=4)
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = TowerLRN()
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)  # overlapping pooling: 3 wide, stride 2
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=TOWERS)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = TowerLRN()
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)  # reads both towers
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=TOWERS)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=TOWERS)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2)
        self._add_fc_head(num_classes, dropout)
        # Paper section 5: N(0, 0.01) weights everywhere (the code used 0.03 for conv3-5: we follow the
        # paper); bias 1 in conv2, conv4, conv5 and the hidden fc layers so ReLUs start with positive input.
        for layer, bias in [(self.conv1, 0), (self.conv2, 1), (self.conv3, 0), (self.conv4, 1),
                            (self.conv5, 1), (self.fc6, 1), (self.fc7, 1), (self.fc8, 0)]:
            _init_paper(layer, std=0.01, bias=bias)


class ZFNet(_FlatConvNet):
    """ZFNet: AlexNet with conv1 7x7 stride 2 and conv2 stride 2, dense (one GPU), 224x224 input.

    Output sizes follow the paper's figure 3 (110, 55, 26, 13, 13, 13, 6), which needs conv1
    padding 1 and pooling that rounds up (``ceil_mode``). ``renormalize_filters`` is the paper's
    "renormalize each filter whose RMS exceeds 0.1 to 0.1", to be called after each optimizer step.
    """

    filter_rms_limit = 0.1

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 96, kernel_size=7, stride=2, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.norm1 = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, stride=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.norm2 = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self._add_fc_head(num_classes, dropout)
        for m in self.modules():  # ZF section 3: weights 1e-2, biases 0
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _init_paper(m, std=0.01, bias=0.0)

    @torch.no_grad()
    def renormalize_filters(self) -> None:
        """Scales down every conv filter whose RMS is above ``filter_rms_limit`` back to that radius."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                rms = m.weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                m.weight.mul_(torch.clamp(self.filter_rms_limit / rms, max=1.0))


@register_model
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> AlexNet:
    """AlexNet as trained on two GTX 580s (2012), the split expressed as groups: 60,965,224 params."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, dropout=dropout)


@register_model
def zfnet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> ZFNet:
    """ZFNet (Zeiler & Fergus 2013, arXiv 1311.2901 v3): 62,357,608 params."""
    return ZFNet(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
