"""``strategy=two_gpu_split``: AlexNet trained as in 2012, one tower per GPU, and data parallel over pairs.

Ranks 2p and 2p+1 form pair p and hold towers 0 and 1 of one AlexNet (``models/alexnet_split.py``);
the towers exchange activations exactly where the paper's network crosses between the GPUs. With
more than two processes the pairs are data-parallel replicas: gradients are averaged over the
replicas of the same tower only, each pair reads its own data shard, and both processes of a pair
read the same batches with the same augmentation.

Checkpoints hold the grouped single-device ``alexnet``'s weights and optimizer state, so a run moves
between ``strategy=single`` (or ``ddp``) and this one in either direction.
"""

import logging

import torch
import torch.distributed as dist
from omegaconf import DictConfig
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only

from models.alexnet import AlexNet
from models.alexnet_split import all_gather_contiguous, grouped_state_dict, tower_from_grouped, tower_state_dict

log = logging.getLogger(__name__)
NET = "net."  # the LightningModule holds the network as ``self.net``


class StrategyConfigError(ValueError):
    """A network the split cannot hold (a config made in code: the config check refuses the rest before a run)."""


def plan_processes(cfg: DictConfig) -> dict:
    """Picks where a ``two_gpu_split`` run's processes run (its model and process count were checked before
    it started, by ``trainer/config_check/``).

    Returns:
        Trainer overrides: ``accelerator="cpu"`` when the machine has fewer GPUs than processes and
        the accelerator was left on ``auto`` (the run then says so in one line), else nothing.
    """
    devices, nodes = cfg.trainer.devices, cfg.trainer.num_nodes
    if cfg.trainer.accelerator == "auto" and torch.cuda.device_count() < devices:
        if rank_zero_only.rank == 0:
            log.info("two_gpu_split: %d GPU(s) here, %d needed: running the towers as %d CPU processes (gloo)",
                     torch.cuda.device_count(), devices, devices * nodes)
        return {"accelerator": "cpu"}
    return {}


class TwoGPUSplitStrategy(DDPStrategy):
    """DDP over pairs of processes that each hold one AlexNet split in two towers (see the module docstring)."""

    strategy_name = "two_gpu_split"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._pair_group = self._replica_group = None

    @property
    def tower(self) -> int:
        return self.global_rank % 2

    @property
    def num_pairs(self) -> int:
        return self.world_size // 2

    def setup_distributed(self) -> None:
        super().setup_distributed()
        # Every rank creates every group, in the same order (torch.distributed requires it).
        for pair in range(self.num_pairs):
            group = dist.new_group([2 * pair, 2 * pair + 1], timeout=self._timeout)
            if pair == self.global_rank // 2:
                self._pair_group = group
        for tower in (0, 1):
            group = dist.new_group(list(range(tower, self.world_size, 2)), timeout=self._timeout)
            if tower == self.tower:
                self._replica_group = group

    @property
    def distributed_sampler_kwargs(self) -> dict:
        # one data shard per pair: both towers of a pair must see the same images
        return {"num_replicas": self.num_pairs, "rank": self.global_rank // 2}

    def setup(self, trainer) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting:  # before DDP wraps the model and the optimizer is built on its parameters
            self._split_model()
        super().setup(trainer)
        if not fitting:  # after DDP's world-wide sync of the (still whole) weights, which would mix the towers
            self._split_model()
            self.model_to_device()

    def _split_model(self) -> None:
        module = self.lightning_module
        if not isinstance(module.net, AlexNet):
            raise StrategyConfigError(f"strategy=two_gpu_split needs model=alexnet, got {type(module.net).__name__}")
        # Checkpoints were restored into the whole model before this point, so the tower starts from them.
        module.net = tower_from_grouped(module.net, self.tower, group=self._pair_group,
                                        dropout_seed=torch.initial_seed() + 1 + self.global_rank)

    def training_step(self, batch, batch_idx: int, *args, **kwargs):
        if batch_idx == 0:  # once an epoch: a pair reading different batches would train on nonsense, silently
            self._check_pair_reads_the_same(batch)
        return super().training_step(batch, batch_idx, *args, **kwargs)

    def _check_pair_reads_the_same(self, batch) -> None:
        images, labels = batch
        mine = torch.stack([images.double().sum(), images.double().square().sum(), labels.double().sum()])
        both = self._gather_pair(mine.unsqueeze(0))
        if not torch.allclose(both[0], both[1], rtol=1e-6):
            raise RuntimeError(f"the two towers of pair {self.global_rank // 2} were given different batches "
                               f"(checksums {both.tolist()}); the data loader must shard by pair and seed "
                               f"augmentation by pair (data_pipelines.datamodule)")

    def _setup_model(self, model):
        # gradients are averaged over the replicas of this tower, never with the other tower's
        self._ddp_kwargs["process_group"] = self._replica_group
        return super()._setup_model(model)

    # --- one checkpoint format: the grouped alexnet's -------------------------------------------------------

    def _gather_pair(self, tensor: torch.Tensor) -> torch.Tensor:
        """Tower 0's and tower 1's versions of a tensor, concatenated along dim 0 (the split dimension)."""
        return torch.cat(all_gather_contiguous(tensor, self._pair_group))

    def lightning_module_state_dict(self) -> dict:
        return self.joined_state_dict(super().lightning_module_state_dict())

    def joined_state_dict(self, state: dict) -> dict:
        """A LightningModule's state dict holding this process's tower (``net.``) as the grouped alexnet's: the
        pair's two towers joined (both processes call it together). The trained weights' and their average's."""
        tower = {k[len(NET):]: v for k, v in state.items() if k.startswith(NET)}
        towers = [{}, {}]
        for key, value in tower.items():
            towers[0][key], towers[1][key] = self._gather_pair(value).chunk(2)
        whole = {NET + k: v for k, v in grouped_state_dict(towers).items()}
        return {**{k: v for k, v in state.items() if not k.startswith(NET)}, **whole}

    def tower_state_dict(self, state: dict) -> dict:
        """The converse: a LightningModule's state dict of the grouped alexnet, with this process's tower's half."""
        net = tower_state_dict({k[len(NET):]: v for k, v in state.items() if k.startswith(NET)}, self.tower)
        return {**{k: v for k, v in state.items() if not k.startswith(NET)}, **{NET + k: v for k, v in net.items()}}

    def optimizer_state(self, optimizer) -> dict:
        # per-parameter tensors (momentum buffers) have the tower parameter's shape: join them like the weights
        state = super().optimizer_state(optimizer)
        joined = {index: {name: self._gather_pair(v) if torch.is_tensor(v) and v.dim() else v
                          for name, v in per_param.items()}
                  for index, per_param in state["state"].items()}
        return {**state, "state": joined}

    def load_optimizer_state_dict(self, checkpoint) -> None:
        tower_states = []
        for state in checkpoint["optimizer_states"]:
            sliced = {index: {name: v.chunk(2)[self.tower].clone() if torch.is_tensor(v) and v.dim() else v
                              for name, v in per_param.items()}
                      for index, per_param in state["state"].items()}
            tower_states.append({**state, "state": sliced})
        super().load_optimizer_state_dict({**checkpoint, "optimizer_states": tower_states})


__all__ = ["TwoGPUSplitStrategy", "StrategyConfigError", "plan_processes"]
