"""A NaN/inf loss or NaN/inf weights stop the run, naming the step; no checkpoint is written with them."""

from pathlib import Path

import pytorch_lightning as pl
import torch

from ..interrupt import resume_command
from ..steps import epoch_number, is_logging_step, optimizer_steps_on_this_batch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """Stops the run at a NaN/inf loss, naming the step, and never lets a checkpoint be written after it.

    The test runs on the device every step: ``isfinite`` of the loss into the next slot of a buffer of
    ``log_every_n_steps`` flags (two small device operations, no host sync). The host reads the
    buffer only every ``log_every_n_steps`` steps, at the end of each epoch and before any checkpoint
    is written, and names the first bad step from it. The checkpoints written before the bad step are
    left as they are.
    """

    def __init__(self, last_ckpt: str | Path | None = None) -> None:
        self._flags: torch.Tensor | None = None
        self._slots: list[torch.Tensor] = []  # views of the buffer, one per batch of the window
        self._steps: list[int] = []  # the global step each of those batches' gradients went into
        self._count = 0
        self.last_ckpt = Path(last_ckpt) if last_ckpt else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self._flags is None or self._flags.device != loss.device or self._count == len(self._slots):
            self.check(trainer)
            batches = max(1, trainer.log_every_n_steps) * trainer.accumulate_grad_batches
            self._flags = torch.ones(batches, dtype=torch.bool, device=loss.device)
            self._slots = list(self._flags.unbind(0))
        # this batch's step: counted already when the optimizer stepped, the next one while gradients accumulate
        del self._steps[self._count:]  # the window's earlier batches stay; a checked window's are dropped
        self._steps.append(trainer.global_step + (0 if optimizer_steps_on_this_batch(trainer) else 1))
        self._slots[self._count].copy_(torch.isfinite(loss.detach()))
        self._count += 1
        if is_logging_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)  # raising here aborts the save before anything is written
        # A finite loss can still be followed by an update that makes the weights NaN/inf (a huge rate): the loss
        # of the next step shows it, but a checkpoint written in between (every N steps, N = 1) would keep them.
        weights = [t for t in checkpoint["state_dict"].values() if torch.is_tensor(t) and t.is_floating_point()]
        if weights and not bool(torch.stack([torch.isfinite(t).all() for t in weights]).all()):  # one host read
            self._raise(trainer, trainer.global_step, "the weights became NaN/inf in the update of")

    def check(self, trainer) -> None:
        """Reads the flags of the steps since the last check (one host read); raises at the first bad one."""
        if not self._count:
            return
        window, self._count = self._flags[:self._count], 0
        if not bool(window.all()):
            first_bad = self._steps[int((~window).nonzero()[0, 0])]
            self._raise(trainer, first_bad, "the training loss became NaN/inf at")

    def _raise(self, trainer, step: int, what: str) -> None:
        last = self.last_ckpt if self.last_ckpt is not None and self.last_ckpt.is_file() else None
        kept = (f"The last good checkpoint is kept: {last} (checkpoints are written with finite weights only); "
                f"resume from it at a lower rate: {resume_command(last, drop=('optim.lr',))} optim.lr=<lower rate>"
                if last else "No checkpoint had been written yet; lower optim.lr.")
        raise NonFiniteLossError(f"{what} global step {step} (epoch {epoch_number(trainer)}); training stopped. {kept}")
