"""Progress on a terminal: Lightning's Rich bar, redrawn on logging steps only."""

import time

from pytorch_lightning.callbacks import RichProgressBar

from ..steps import is_logging_step
from .step_metrics import StepMetrics


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, redrawn on the logging steps at most every ``min_interval_s``
    seconds, and at the end of the epoch, with the training loss.

    The stock bar reads its values from the device after every step; on a GPU each read waits for
    the queued work to finish, so the bar would cost a sync per step. A redraw costs about 1 ms of
    host time, so at short steps it is also kept to a few a second (as tqdm's ``mininterval``). The
    loss shown is the one ``StepMetrics`` logged last.
    """

    def __init__(self, step_metrics: StepMetrics | None = None, min_interval_s: float = 0.25, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_metrics, self.min_interval_s, self._drawn = step_metrics, min_interval_s, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        last = batch_idx + 1 == self.total_train_batches
        if last or (is_logging_step(trainer) and time.perf_counter() - self._drawn >= self.min_interval_s):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            self._drawn = time.perf_counter()

    def _get_train_description(self, current_epoch: int) -> str:
        """``Epoch 3/30``: counted from 1, as the epoch lines and the stop messages count (Lightning's bar: 2/29)."""
        text = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if self.trainer.max_epochs else "")
        return f"{text:{len(self.validation_description)}}" if len(self.validation_description) > len(text) else text

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if self.step_metrics is not None and self.step_metrics.loss is not None:
            metrics["train/loss"] = f"{self.step_metrics.loss:.3f}"
        return metrics
