"""LeNet-5 as in LeCun, Bottou, Bengio, Haffner, Proc. IEEE 1998, section II-B.

Faithful where it changes the layer table: the sparse C3 connection table (Table I), trainable
subsampling (one coefficient and one bias per map), the scaled tanh squashing function and the
Euclidean RBF output layer with fixed centres. The output layer's 840 centres are a buffer, not
parameters: the paper counts 60,000 *trainable* parameters and so do we. The paper drew the
centres as stylised 7x12 bitmaps of the characters; we use fixed +-1 codes drawn from a seeded
generator, which plays the same role (equidistant-ish targets in F6 space). Every trainable weight and
bias starts uniform in +-2.4/F, F the unit's fan-in (appendix A of the paper: "the weights were initialized
with random values uniformly distributed between -2.4/F_i and 2.4/F_i").
"""

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

# Table I of the paper: which S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def paper_uniform(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    """U(-2.4/F, 2.4/F) in place (appendix A): the sigmoids start in their linear range."""
    with torch.no_grad():
        return tensor.uniform_(-2.4 / fan_in, 2.4 / fan_in)


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (appendix A)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 window times a trainable coefficient plus a trainable bias, per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = 2, 2, 0
        self.weight = nn.Parameter(paper_uniform(torch.empty(channels), fan_in=4))  # the 2x2 window's sum
        self.bias = nn.Parameter(paper_uniform(torch.empty(channels), fan_in=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, 2) * 4.0
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseConv(nn.Module):
    """C3: a 5x5 convolution in which output map j reads only the input maps ``table[j]``.

    Maps that read the same number of inputs are computed together as one grouped convolution over
    the gathered input maps, so only the connected weights exist (1,516 parameters, not 2,416).
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int = 5) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, 1, 0
        self.out_channels = len(table)
        fan_ins = sorted({len(t) for t in table})
        self._groups: list[tuple[int, list[int], list[int]]] = []
        for i, fan_in in enumerate(fan_ins):
            outputs = [j for j, t in enumerate(table) if len(t) == fan_in]
            inputs = [c for j in outputs for c in table[j]]
            self.register_buffer(f"index_{i}", torch.tensor(inputs), persistent=False)
            units_fan_in = fan_in * kernel_size * kernel_size
            weight = paper_uniform(torch.empty(len(outputs), fan_in, kernel_size, kernel_size), units_fan_in)
            self.register_parameter(f"weight_{i}", nn.Parameter(weight))
            self.register_parameter(f"bias_{i}", nn.Parameter(paper_uniform(torch.empty(len(outputs)), units_fan_in)))
            self._groups.append((i, outputs, inputs))
        order = [j for _, outputs, _ in self._groups for j in outputs]
        self.register_buffer("_unpermute", torch.tensor(order).argsort(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for i, outputs, _ in self._groups:
            gathered = x.index_select(1, getattr(self, f"index_{i}"))
            weight, bias = getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}")
            parts.append(F.conv2d(gathered, weight, bias, groups=len(outputs)))
        return torch.cat(parts, dim=1).index_select(1, self._unpermute)


class RBFOutput(nn.Module):
    """Euclidean RBF units: y_i = sum_j (x_j - w_ij)^2; we return -y as logits (smaller distance wins)."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 1998) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=generator) * 2.0 - 1.0
        self.register_buffer("centres", codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the squared distances written out (84 x 10 per image): exact, and exportable to ONNX, where
        # torch.cdist is not
        return -(x.unsqueeze(1) - self.centres).pow(2).sum(-1)


class LeNet5(nn.Module):
    """LeNet-5 on 32x32 single-channel input."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.act1 = ScaledTanh()
        self.s2 = Subsampling(6)
        self.act2 = ScaledTanh()
        self.c3 = SparseConv(C3_TABLE)
        self.act3 = ScaledTanh()
        self.s4 = Subsampling(16)
        self.act4 = ScaledTanh()
        # C5 is a convolution in the paper (5x5 on a 5x5 input), i.e. a fully connected 400 -> 120.
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.act5 = ScaledTanh()
        self.flatten = nn.Flatten()
        self.f6 = nn.Linear(120, 84)
        self.act6 = ScaledTanh()
        self.output = RBFOutput(84, num_classes)
        for layer in (self.c1, self.c5, self.f6):  # appendix A's initialisation, not PyTorch's default
            fan_in = layer.weight[0].numel()
            paper_uniform(layer.weight, fan_in)
            paper_uniform(layer.bias, fan_in)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F6's 84 outputs, which the RBF units compare with their fixed codes."""
        x = self.act2(self.s2(self.act1(self.c1(x))))
        x = self.act4(self.s4(self.act3(self.c3(x))))
        return self.act6(self.f6(self.flatten(self.act5(self.c5(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))

@register_model
def lenet5(*, num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998): 60,000 trainable parameters, plus 840 fixed RBF centres for 10 classes."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels)
