"""Training memory on one device: parameters, gradients, optimizer state, and the activations
autograd keeps for the backward pass, at a given batch size.

Counted, not estimated: the model runs one forward pass on the meta device (shapes only, no
memory, no time) and every tensor autograd saves is added up once per storage. Not counted: the
transient buffers of the backward pass (each layer's input gradient, freed as it goes) and the
framework's workspaces, which is why a real run's peak is somewhat higher.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from .alexnet_split import AlexNetTower


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes held on one device while training."""

    params: int
    grads: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations


def saved_activation_bytes(model: nn.Module, images: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves during ``model(images)`` for the backward pass, each storage
    once (a ReLU output that the next layer also saves counts once), the parameters left out."""
    params = {StorageWeakRef(p.untyped_storage()).cdata for p in model.parameters()}
    saved: dict[int, tuple[int, torch.Tensor]] = {}  # the tensor is kept so that its storage id stays unique

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = StorageWeakRef(storage).cdata
        if key not in params:
            saved[key] = (storage.nbytes(), tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(images)
    return sum(nbytes for nbytes, _ in saved.values())


def training_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    optimizer_states: int = 1) -> TrainingMemory:
    """Memory of training ``model`` (built on the meta device) at ``batch_size`` in fp32.

    Args:
        optimizer_states: tensors the optimizer keeps per parameter (1: SGD's momentum; 2: Adam).
    """
    model.train()
    with torch.device("meta"):
        images = torch.empty(batch_size, *input_shape)
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return TrainingMemory(params=params, grads=params, optimizer=optimizer_states * params,
                          activations=saved_activation_bytes(model, images))


class _TowerWithoutPeer(AlexNetTower):
    """A tower whose peer's half is stood in for by an empty tensor of the same shape: the tower's own
    memory can be counted in one process (the exchanges save nothing for the backward pass)."""

    def _gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.cat([x, torch.empty_like(x)], dim=dim)

    def _join_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._gather(x, dim=1)


def format_memory(label: str, memory: TrainingMemory) -> str:
    mib = {k: v / 2**20 for k, v in vars(memory).items()}
    return (f"  {label}: parameters {mib['params']:,.1f} MiB + gradients {mib['grads']:,.1f} MiB + optimizer "
            f"{mib['optimizer']:,.1f} MiB + activations {mib['activations']:,.1f} MiB = {memory.total / 2**30:.2f} GiB")


def split_tower_memory(batch_size: int = 128, num_classes: int = 1000, dropout: float = 0.5) -> TrainingMemory:
    """Training memory of one tower of the two-GPU AlexNet (one process of ``strategy=two_gpu_split``)."""
    with torch.device("meta"):
        tower = _TowerWithoutPeer(num_classes=num_classes, dropout=dropout)
    return training_memory(tower, (3, 224, 224), batch_size)
