"""The run's record: its opening block, its W&B run id and validation results in every checkpoint."""

import logging

import pytorch_lightning as pl
import torch

from data_pipelines.sharding import data_parallel_rank_and_size
from models import create_model
from models.alexnet_split import AlexNetTower

from ...results import tracking
from ..steps import epoch_number

log = logging.getLogger(__name__)


class RunRecord(pl.Callback):
    """What the run is, said once, and what it has measured, kept: at the start of fitting, what it runs on
    (processes, nodes, devices, precision, the batch globally and per process, the learning rate after
    scaling, DALI's threads and decoder) on the console, and the W&B summaries' best-and-last set up; in
    every checkpoint the W&B run id, so that a run resumed from it continues the same W&B run, and the
    validation results so far and the global batch size (Lightning's callback state).

    W&B writes its files through a process of its own, and a ``kill -9`` of the training process can lose
    what it had not yet written: the last validation may be in ``last.ckpt`` and missing from W&B. So a run
    resumed from a checkpoint logs again each validation result of the checkpoint that the W&B folders of
    its run id do not hold: after any kill and resume, the W&B run holds every validation that reached a
    checkpoint. (One callback for all this: every callback costs about 10 µs of Lightning's hook calls per
    step.) The console and W&B: rank 0 only."""

    def __init__(self, logger=None, batch_size: int | None = None, title: str = "", recipe: str = "") -> None:
        self.wandb = logger if tracking.is_wandb(logger) else None
        self.val_history: list[dict] = []
        self.batch_size = batch_size  # the global batch: a mid-epoch checkpoint resumes at it only
        self.title, self.recipe = title, recipe
        self.cpu_threads: tuple[int, str] | None = None  # torch's threads and how they were chosen (train.py)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        log.info("\n".join(self.describe(trainer)))
        if self.wandb is not None:
            tracking.define_summaries(self.wandb, ("val/top1_err", "val/top5_err"))

    def on_train_start(self, trainer, pl_module) -> None:
        if self.wandb is not None and trainer.is_global_zero and self.val_history:  # a resumed run
            missing = tracking.log_missing_validations(self.wandb, self.val_history)
            if missing:
                log.info("W&B: %d validation result(s) of the checkpoint were missing from the run's files "
                         "(epochs %s) and are logged again", len(missing),
                         ", ".join(str(h["epoch"]) for h in missing))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "val_ema/"))}
        if metrics:  # the step Lightning logs epoch-end results at (_LoggerConnector.log_metrics)
            self.val_history.append({**metrics, "epoch": epoch_number(trainer),
                                     "trainer/global_step": trainer.fit_loop.epoch_loop._batches_that_stepped})

    def state_dict(self) -> dict:
        return {"val_history": self.val_history, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict) -> None:
        self.val_history = list(state_dict.get("val_history", []))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.wandb is not None and trainer.is_global_zero:
            checkpoint["wandb_run_id"] = self.wandb.version

    def describe(self, trainer) -> list[str]:
        """The run's opening block: the model, where it runs, the data, the recipe, where its files go."""
        from models.catalogue import CATALOGUE

        device = trainer.strategy.root_device
        _, replicas = data_parallel_rank_and_size(trainer)
        data, module = trainer.datamodule, trainer.lightning_module
        hparams = getattr(module, "hparams", {})
        name = hparams.get("model_name", "")
        params = _trainable(module)
        if isinstance(getattr(module, "net", None), AlexNetTower):  # this process holds one tower: say the whole
            whole = _whole_network(hparams)
            params = f"{whole:,} trainable parameters (tower 0: {params:,}, tower 1: {whole - params:,})"
        else:
            params = f"{params:,} trainable parameters"
        paper = f" ({CATALOGUE[name].paper})" if name in CATALOGUE else ""
        side = hparams.get('input_size', '?')
        shape = f"{hparams.get('in_channels', '?')} x {side} x {side}"
        lines = [self.title or name,
                 f"  model: {name}{paper}, {params}, input {shape}, "
                 f"{hparams.get('num_classes', '?')} classes",
                 f"  runs on: {trainer.world_size} process(es) = {trainer.num_nodes} node(s) x {trainer.num_devices}, "
                 f"one {device.type.upper()} device each ({type(trainer.strategy).__name__}), precision "
                 f"{trainer.precision}"]
        if self.cpu_threads:
            lines.append(f"  CPU threads: torch {self.cpu_threads[0]} per process ({self.cpu_threads[1]})")
        if data is not None and hasattr(data, "threads"):
            sizes = (f" ({len(data.listing.files['train']):,} train / {len(data.listing.files['val']):,} val images "
                     f"in {data.listing.root})" if getattr(data, "listing", None) else "")
            lines.append(f"  data: {data.name}{sizes}, global batch {data.batch_size} = {replicas} replica(s) x "
                         f"{data.batch_size // replicas}; DALI {data.threads} thread(s) per process "
                         f"({data.threads_how}), decoder {data.decoder_for_device()[0]}")
            if trainer.accumulate_grad_batches > 1:
                lines[-1] += (f"; {trainer.accumulate_grad_batches} batches a step (gradients accumulated): effective "
                              f"batch {data.batch_size * trainer.accumulate_grad_batches}")
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            resumed = getattr(module, "resumed_lr", None)  # restored after this hook: the checkpoint's, as resumed
            rate = (f"lr {resumed:g} (resumed: the rate of its next step)" if resumed is not None else
                    f"lr {group['lr']:g} (after scaling to the "
                    f"{'global' if trainer.accumulate_grad_batches == 1 else 'effective'} batch)")
            lines.append(f"  optimizer: {type(trainer.optimizers[0]).__name__}, {rate}, momentum "
                         f"{group.get('momentum', '-')}, weight decay {group.get('weight_decay', '-')}")
        if self.recipe:
            lines.append(f"  recipe: {self.recipe}")
        lines.append(f"  run folder: {trainer.default_root_dir} (console.log: this console; run.log: every "
                     f"library's log lines)")
        if self.wandb is not None:
            lines.append(f"  W&B: {tracking.where(self.wandb)}")
        return lines


def _trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _whole_network(hparams) -> int:
    """The trainable parameters of the whole network, built on the meta device (no memory, milliseconds)."""
    with torch.device("meta"):
        return _trainable(create_model(hparams["model_name"], num_classes=hparams["num_classes"],
                                       in_channels=hparams["in_channels"]))
