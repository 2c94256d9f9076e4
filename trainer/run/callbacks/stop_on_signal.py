"""Ctrl-C / SIGTERM: last.ckpt at the next step, then the run stops and says how to resume."""

import signal
from pathlib import Path

import pytorch_lightning as pl

from .. import interrupt
from ..steps import epoch_number, at_epochs_last_batch, is_logging_step


class StopOnSignal(pl.Callback):
    """Ctrl-C / SIGTERM noted; at the next step ``last.ckpt`` is written and the run stops (``run/interrupt.py``).
    At an epoch's last batch the stop waits for the epoch's validation and end: a checkpoint of the last batch
    before validation would resume with that validation skipped (``checkpoints.LastCheckpoint``)."""

    def __init__(self, last_ckpt: Path) -> None:
        self.last_ckpt, self._at_epoch_end = last_ckpt, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.world_size == 1:
            stop = bool(interrupt.received)
        elif is_logging_step(trainer):  # several processes stop at the same step: one reduction, where the
            stop = trainer.strategy.reduce_boolean_decision(bool(interrupt.received), all=False)  # host reads anyway
        else:
            return
        if stop and at_epochs_last_batch(trainer):
            self._at_epoch_end = True  # every process: the last batch is the same for all
        elif stop:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_epoch_end:
            self._stop(trainer)

    def _stop(self, trainer) -> None:
        trainer.save_checkpoint(self.last_ckpt)  # every process, at this same step (a split pair gathers)
        signum = interrupt.received[0] if interrupt.received else signal.SIGINT  # else a peer got it
        where = (f"at the end of epoch {epoch_number(trainer)} of {trainer.max_epochs}" if self._at_epoch_end else
                 f"in epoch {epoch_number(trainer)} of {trainer.max_epochs}, after "
                 f"{trainer.fit_loop.epoch_loop.batch_progress.current.processed} of its {trainer.num_training_batches} batches")
        raise interrupt.RunInterrupted(
            f"stopped by {interrupt.NAMES[signum]} at global step {trainer.global_step} ({where}); checkpoint: "
            f"{self.last_ckpt}\n"
            f"resume with: {interrupt.resume_command(self.last_ckpt)}", signum)
