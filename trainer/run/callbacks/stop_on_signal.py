"""Ctrl-C / SIGTERM during training or validation: last.ckpt at that step, then the run stops and says how to
resume (``run/interrupt.py`` holds the whole stop path)."""

import signal
from pathlib import Path

import pytorch_lightning as pl

from .. import interrupt
from ..steps import at_epochs_last_batch, epoch_number, is_logging_step, optimizer_steps_on_this_batch


def take_over_from_lightning(trainer) -> None:
    """Lightning's own SIGTERM handling off: this callback's is the one stop path.

    Lightning (2.6) adds a handler of its own to SIGTERM during fit; its flag then ends the run with a bare
    ``SIGTERMException`` from whichever loop sees it first (in validation, after a checkpoint write), with no
    checkpoint of the step and no message, and in a multi-process run it broadcasts that flag from rank 0
    before every training step and reads it on the host (a sync per step on GPUs, for nothing once the flag can
    never be set). Both are switched off here.

    Raises:
        RuntimeError: if Lightning no longer has these parts (a newer version): look again, then.
    """
    connector, loop = trainer._signal_connector, trainer.fit_loop.epoch_loop
    if not hasattr(connector, "register_signal_handlers") or not hasattr(loop, "_broadcast_sigterm_tensor"):
        raise RuntimeError("pytorch_lightning's SIGTERM handling has changed (no _SignalConnector."
                           "register_signal_handlers or _broadcast_sigterm_tensor): "
                           "trainer/run/callbacks/stop_on_signal.take_over_from_lightning needs updating")
    connector.register_signal_handlers = lambda: None
    loop._broadcast_sigterm_tensor = lambda: None


class StopOnSignal(pl.Callback):
    """A noted Ctrl-C / SIGTERM stops the run at the next training step or validation batch, with ``last.ckpt``
    written at that step in every process.

    Several processes stop at the same step: they agree on the logging steps (one reduction, where the host
    reads the device anyway), and every ``log_every_n_steps`` validation batches. At an epoch's last batch the
    stop waits for the validation, which then stops at its first batch: a checkpoint of the last batch would
    resume with that validation skipped (Lightning counts the epoch as done). Stopped in mid-validation, the
    checkpoint is the training state with the validation's progress set back to its start: Lightning resumes it
    by running the whole validation again (its "restarted mid-evaluation" stage), then the next epoch.
    """

    def __init__(self, last_ckpt: Path) -> None:
        self.last_ckpt, self._in_validation, self._at_epoch_end = last_ckpt, False, False

    def _agreed(self, trainer, check_now: bool) -> bool:
        if trainer.world_size == 1:
            return bool(interrupt.received)
        return check_now and trainer.strategy.reduce_boolean_decision(bool(interrupt.received), all=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not optimizer_steps_on_this_batch(trainer):  # a checkpoint holds no gradients accumulated so far
            return
        stop = self._agreed(trainer, is_logging_step(trainer))
        if stop and at_epochs_last_batch(trainer):
            self._at_epoch_end = True  # every process: the validation stops at its first batch, else the epoch's end
        elif stop:
            where = (f"in epoch {epoch_number(trainer)} of {trainer.max_epochs}, after "
                     f"{trainer.fit_loop.epoch_loop.batch_progress.current.processed} of its "
                     f"{trainer.num_training_batches} batches")
            self._stop(trainer, where)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # an epoch whose validation did not run (check_val_every_n_epoch, limit_val_batches=0). No reduction here:
        # the processes agreed at the last batch (a signal after it waits for the next logging step)
        if self._at_epoch_end or (trainer.world_size == 1 and interrupt.received):
            self._stop(trainer, f"at the end of epoch {epoch_number(trainer)} of {trainer.max_epochs}")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not optimizer_steps_on_this_batch(trainer) or \
                not self._agreed(trainer, batch_idx % max(1, trainer.log_every_n_steps) == 0):
            return  # (a validation inside a window of accumulated batches: the stop waits for the window's step)
        self._in_validation = True
        try:
            self._stop(trainer, f"in the validation of epoch {epoch_number(trainer)} of {trainer.max_epochs}, "
                                f"after its {trainer.fit_loop.epoch_loop.batch_progress.current.processed} batches "
                                f"of training; resumed, the validation runs again")
        finally:
            self._in_validation = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if not self._in_validation:
            return
        # Lightning's "restarted mid-evaluation" stage (_EvaluationLoop.update_restart_stage): one batch started,
        # none processed; its counters then restart the validation from its first batch
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
        for counts in (progress["total"], progress["current"]):
            counts.update(ready=1, started=1, processed=0, completed=0)
        progress["is_last_batch"] = False

    def _stop(self, trainer, where: str) -> None:
        # every process, at this same step (a split pair gathers)
        trainer.save_checkpoint(self.last_ckpt, weights_only=False)
        signum = interrupt.received[0] if interrupt.received else signal.SIGINT  # else a peer got it
        raise interrupt.RunInterrupted(
            f"stopped by {interrupt.NAMES[signum]} at global step {trainer.global_step} ({where}); checkpoint: "
            f"{self.last_ckpt}\n"
            f"resume with: {interrupt.resume_command(self.last_ckpt)}", signum)
