"""Where the trainer's time per step goes: the same steps timed with the trainer's parts added one at a time.

Each layer is a real ``trainer.fit`` on the same in-memory batch (``Repeat``), timed by ``StepTimer``,
all layers interleaved in each repeat (this machine's speed drifts; a layer is compared with the
others of its own repeat), median per layer:

1. the bare PyTorch loop (``forward, loss, backward, step, zero_grad``);
2. Lightning's own loop: a minimal LightningModule (``training_step`` returns the loss), no
   callbacks, logger, checkpoints, model summary or progress bar;
3. + the trainer's LightningModule (``trainer/run/module.py``: the loss logged, the validation metrics);
4. + the W&B logger (offline);
5. + the checkpoint callbacks;
6. + the trainer's callbacks (throughput, the NaN guard, W&B summaries, the start-up report);
7. + the progress bar and the model summary: the trainer exactly as ``python -m trainer`` builds it.

``tiny=True`` puts a single linear layer in place of the network in every layer, so that a step
computes next to nothing and what is timed is the loop's fixed cost per step, free of the compute's
run-to-run noise (several per cent of a step on a shared machine: more than the costs sought).
"""

import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch.nn.functional as F
from pytorch_lightning.callbacks import Checkpoint, ModelSummary, ProgressBar
from torch import nn

from models import create_model

from ..results import tracking
from ..run.callbacks import NonFiniteLossGuard, RunRecord, StepMetrics
from ..train import build_logger, build_module, build_optimizer, build_trainer
from .measure import Repeat, StepTimer, bench_bare, synthetic_batch

LAYERS = ("bare PyTorch loop", "Lightning's loop, minimal module", "+ the trainer's module", "+ W&B logger",
          "+ checkpoint callbacks", "+ the trainer's callbacks", "+ progress bar, model summary (the trainer)")
_OURS = (StepMetrics, NonFiniteLossGuard, RunRecord)


def tiny_network(cfg) -> nn.Module:
    """A network that computes next to nothing on the config's input: flatten, one linear layer."""
    size = cfg.model.in_channels * cfg.model.input_size ** 2
    return nn.Sequential(nn.Flatten(), nn.Linear(size, cfg.data.num_classes))


class _MinimalModule(pl.LightningModule):
    """Lightning at its leanest: the network, the loss, the optimizer."""

    def __init__(self, cfg, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = build_optimizer(cfg)

    def training_step(self, batch, batch_idx: int):
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def configure_optimizers(self):
        return self.optimizer_factory(params=self.parameters())


def _kept(callback, layer: int) -> bool:
    """Whether layer ``layer`` (2-6) has this callback of the full trainer."""
    if isinstance(callback, Checkpoint):
        return layer >= 5
    if isinstance(callback, _OURS):
        return layer >= 6
    return isinstance(callback, (ProgressBar, ModelSummary)) and layer >= 7


def time_layer(cfg, layer: int, warmup: int, steps: int, device, tiny: bool = False) -> tuple[float, float]:
    """Wall and training-thread CPU milliseconds per step of layer ``layer`` (1-7; see the module docstring)."""
    network = (lambda: tiny_network(cfg)) if tiny else (lambda: create_model(
        cfg.model.model_name, num_classes=cfg.data.num_classes, in_channels=cfg.model.in_channels))
    if layer == 1:
        cpu = []
        return 1000 * cfg.data.batch_size / bench_bare(cfg, warmup, steps, device, cpu, network), cpu[0]
    if layer == 2:
        module = _MinimalModule(cfg, network())
    else:
        module = build_module(cfg, scheduled=False)
        module.net = network()
    with tempfile.TemporaryDirectory() as folder:
        logger = build_logger(cfg, Path(folder)) if layer >= 4 else False
        trainer = build_trainer(cfg, Path(folder), logger)
        timer = StepTimer(warmup, steps, time.perf_counter())
        trainer.callbacks[:] = [timer, *(c for c in trainer.callbacks if _kept(c, layer))]
        if layer < 7:
            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, ModelSummary)]
        trainer.fit(module, train_dataloaders=Repeat(synthetic_batch(cfg, "cpu"), warmup + steps))
        tracking.finish(logger, exit_code=0)
    return 1000 * timer.elapsed / steps, 1000 * timer.cpu_elapsed / steps


def breakdown(cfg, warmup: int, steps: int, repeats: int, device, tiny: bool = False) -> dict:
    """Wall and CPU milliseconds per step of every layer (median over the repeats) and each layer's cost.

    The CPU time of the training thread is the steadier measure of what the host does per step on a
    shared machine: another process competing for the cores stretches the wall time, not it.
    """
    wall = {layer: [] for layer in range(1, len(LAYERS) + 1)}
    cpu = {layer: [] for layer in wall}
    for repeat in range(repeats):
        for layer in wall:
            w, c = time_layer(cfg, layer, warmup, steps, device, tiny)
            wall[layer].append(w)
            cpu[layer].append(c)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{wall[layer][-1]:.2f}" for layer in wall) + " ms/step",
              flush=True)
    rows = []
    for layer in wall:
        w, c = statistics.median(wall[layer]), statistics.median(cpu[layer])
        w1, c1 = statistics.median(wall[1]), statistics.median(cpu[1])
        rows.append({"layer": LAYERS[layer - 1], "step_ms": round(w, 3), "over_bare_ms": round(w - w1, 3),
                     "cpu_ms": round(c, 3), "cpu_over_bare_ms": round(c - c1, 3),
                     "cpu_added_ms": round(c - statistics.median(cpu[layer - 1]), 3) if layer > 1 else 0.0})
    return {"rows": rows, "overhead_ms_per_step": rows[-1]["over_bare_ms"],
            "overhead_cpu_ms_per_step": rows[-1]["cpu_over_bare_ms"],
            "lightning_loop_cpu_ms": rows[1]["cpu_over_bare_ms"]}


def print_table(result: dict) -> None:
    print(f"{'':<46} {'wall ms':>8} {'over bare':>10} {'CPU ms':>8} {'over bare':>10} {'added':>8}")
    for row in result["rows"]:
        print(f"{row['layer']:<46} {row['step_ms']:8.2f} {row['over_bare_ms']:10.2f} {row['cpu_ms']:8.2f} "
              f"{row['cpu_over_bare_ms']:10.2f} {row['cpu_added_ms']:8.2f}")
