"""One tower of the two-GPU AlexNet, for running the 2012 split across two processes.

Each process holds half the filters of every layer (30,482,612 parameters for 1000 classes). The
towers exchange activations exactly where the paper's network crosses between the GPUs: before
conv3, fc6, fc7 and fc8 (each reads both towers), and the fc8 halves are joined into the logits.
Everything else (conv1, conv2, conv4, conv5, LRN, pooling) reads only the tower's own maps.

Only ``torch.distributed`` is used (no Lightning), so the same module runs under any launcher. The
weights map one to one onto the grouped single-device ``alexnet``: see :func:`tower_state_dict`
and :func:`grouped_state_dict`.
"""

import torch
import torch.distributed as dist
from torch import nn

from .alexnet import AlexNet, TowerLRN

# which dimension of each grouped-model parameter is split between the towers (0: output units)
_SPLIT_DIM = {name: 0 for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")}


def all_gather_contiguous(tensor: torch.Tensor, group) -> list[torch.Tensor]:
    """Every rank's ``tensor``, gathered as contiguous tensors into contiguous buffers.

    A collective whose output buffers have another memory format than its input (``empty_like`` of a
    channels_last tensor, filled from a ``contiguous()`` one) has given silently wrong results
    (pytorch #163483); channels_last activations are therefore made contiguous before they are sent.
    """
    tensor = tensor.contiguous()
    size = dist.get_world_size(group)
    parts = [torch.empty_like(tensor, memory_format=torch.contiguous_format) for _ in range(size)]
    dist.all_gather(parts, tensor, group=group)
    return parts


class _GatherTowers(torch.autograd.Function):
    """Concatenates both towers' activations along ``dim``; the consumer is tower-local (column-split).

    Backward: each tower's consumer produced a partial gradient for ALL gathered inputs, so the
    gradient of a tower's own slice is the sum of both towers' partials for it (a reduce-scatter).
    With two towers each sends the peer only the slice the peer owns: half the gathered gradient,
    the least that can be sent (gloo has no reduce-scatter, so it is an all-gather of those slices).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        ctx.rank, ctx.size = dist.get_rank(group), dist.get_world_size(group)
        return torch.cat(all_gather_contiguous(x, group), dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        chunks = grad.chunk(ctx.size, dim=ctx.dim)
        peer = 1 - ctx.rank
        received = all_gather_contiguous(chunks[peer], ctx.group)  # I send the peer its slice
        return chunks[ctx.rank] + received[peer], None, None


class _GatherForReplicated(torch.autograd.Function):
    """Concatenates both towers' outputs for a consumer that both processes run identically (the loss).

    Backward: both processes hold the same full gradient, so each simply keeps its own slice (summing
    over the towers here would double it).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group) -> torch.Tensor:
        ctx.dim, ctx.rank, ctx.size = dim, dist.get_rank(group), dist.get_world_size(group)
        return torch.cat(all_gather_contiguous(x, group), dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.chunk(ctx.size, dim=ctx.dim)[ctx.rank].contiguous(), None, None


def exchanged_values_per_image(num_classes: int = 1000) -> dict[str, int]:
    """Activations and gradients one tower sends the other per image and step, from the layer sizes.

    Forward, at each crossing the tower sends its own half: pool2 128x13x13 (conv3's input), pool5
    128x6x6 (fc6's), fc6 2048 (fc7's), fc7 2048 (fc8's) and its num_classes/2 logits. Backward, it
    sends the peer's half of the gradient at the first four crossings (the logits' gradient is
    already on both processes). Multiply by the bytes per value (4 in fp32, 2 in bf16).
    """
    crossings = [128 * 13 * 13, 128 * 6 * 6, 2048, 2048]
    return {"forward": sum(crossings) + num_classes // 2, "backward": sum(crossings)}


class TowerDropout(nn.Dropout):
    """Dropout whose masks come from a generator of the tower's own.

    Each GTX 580 drew its own dropout masks, so the two halves of fc6 and fc7 drop units
    independently. Both processes of a pair keep their process-wide RNG in step (it drives the data
    augmentation, which must be identical on both), so drawing masks from it would drop the same
    units in both halves; a private generator seeded per tower keeps the masks independent and the
    process-wide stream untouched.
    """

    def __init__(self, p: float, seed: int) -> None:
        super().__init__(p)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.is_meta:  # shapes only (models.memory counts what is saved): nothing to draw
            return x * torch.empty_like(x) / (1.0 - self.p)
        if self._generator is None or self._generator.device != x.device:
            self._generator = torch.Generator(device=x.device).manual_seed(self.seed)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self._generator)
        return x * keep / (1.0 - self.p)


class _ByReference:
    """The pair's process group, held by reference: a copy of a tower (the moving average of its weights,
    ``copy.deepcopy``) exchanges its activations over the same pair. A process group cannot be copied."""

    def __init__(self, group) -> None:
        self.group = group

    def __deepcopy__(self, memo) -> "_ByReference":
        return self


class AlexNetTower(nn.Module):
    """The half of AlexNet that one GTX 580 held.

    Args:
        group: the two-process group of the pair (rank 0 of it holds tower 0).
        dropout_seed: seed of this tower's dropout masks; give the two towers different seeds.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5, group=None,
                 dropout_seed: int = 0) -> None:
        super().__init__()
        if num_classes % 2:
            raise ValueError(f"the two-GPU split divides fc8 between the towers: num_classes must be even, "
                             f"got {num_classes}")
        self._pair = _ByReference(group)
        self.pad = nn.ZeroPad2d((0, 3, 0, 3))  # cuda-convnet's implicit padding: 224 -> 55x55
        self.conv1 = nn.Conv2d(in_channels, 48, kernel_size=11, stride=4)
        self.norm1 = TowerLRN(towers=1)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(48, 128, kernel_size=5, padding=2)
        self.norm2 = TowerLRN(towers=1)
        self.conv3 = nn.Conv2d(256, 192, kernel_size=3, padding=1)  # reads both towers
        self.conv4 = nn.Conv2d(192, 192, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(192, 128, kernel_size=3, padding=1)
        self.fc6 = nn.Linear(256 * 6 * 6, 2048)  # reads both towers
        self.fc7 = nn.Linear(4096, 2048)  # reads both towers
        self.fc8 = nn.Linear(4096, num_classes // 2)  # reads both towers
        self.drop = TowerDropout(dropout, seed=dropout_seed)
        self.relu = nn.ReLU()

    @property
    def group(self):
        """The two-process group of the pair."""
        return self._pair.group

    def _gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return _GatherTowers.apply(x, dim, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.norm1(self.relu(self.conv1(self.pad(x)))))
        x = self.pool(self.norm2(self.relu(self.conv2(x))))
        x = self.relu(self.conv3(self._gather(x, dim=1)))
        x = self.relu(self.conv4(x))
        x = self.pool(self.relu(self.conv5(x)))
        # the grouped model flattens channel-major over [tower 0's 128 maps, tower 1's 128 maps]
        x = self._gather(x, dim=1).flatten(1)
        x = self.drop(self.relu(self.fc6(x)))
        x = self.drop(self.relu(self.fc7(self._gather(x, dim=1))))
        return self._join_logits(self.fc8(self._gather(x, dim=1)))

    def _join_logits(self, x: torch.Tensor) -> torch.Tensor:
        return _GatherForReplicated.apply(x, 1, self.group)


def tower_state_dict(grouped: dict[str, torch.Tensor], tower: int) -> dict[str, torch.Tensor]:
    """The slice of a grouped ``alexnet`` state dict that tower 0 or 1 holds."""
    out = {}
    for key, value in grouped.items():
        layer = key.split(".")[0]
        out[key] = value.chunk(2, dim=_SPLIT_DIM[layer])[tower].clone() if layer in _SPLIT_DIM else value
    return out


def grouped_state_dict(towers: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Joins the two towers' state dicts into one that the single-device ``alexnet`` loads."""
    out = {}
    for key in towers[0]:
        layer = key.split(".")[0]
        out[key] = torch.cat([t[key] for t in towers], dim=_SPLIT_DIM[layer]) if layer in _SPLIT_DIM else towers[0][key]
    return out


def tower_from_grouped(model: AlexNet, tower: int, group=None, dropout_seed: int = 0) -> AlexNetTower:
    """Builds tower ``tower`` holding exactly its half of a grouped ``AlexNet``'s weights.

    The tower is built on the meta device and then given the weights: no random initialisation runs,
    so the process-wide RNG is left exactly where it was (the data augmentation draws from it).
    """
    with torch.device("meta"):
        split = AlexNetTower(num_classes=model.fc8.out_features, in_channels=model.conv1.in_channels,
                             dropout=model.drop6.p, group=group, dropout_seed=dropout_seed)
    split.load_state_dict(tower_state_dict(model.state_dict(), tower), assign=True)
    return split
