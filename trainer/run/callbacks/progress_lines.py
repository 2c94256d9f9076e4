"""Progress off a terminal: a plain line at a steady pace (a Slurm log, nohup)."""

import time

import pytorch_lightning as pl

from data_pipelines.sharding import data_parallel_rank_and_size

from ..steps import at_epochs_last_batch, epoch_number
from .step_metrics import StepMetrics


class ProgressLines(pl.Callback):
    """Off a terminal (a Slurm log, ``nohup``, ``> file``), where the progress bar draws nothing: a plain line
    at the end of the first step ``every_s`` seconds (``progress_every_s``) after the last line or the epoch's
    start, whatever the step's length (a VGG-16 step on a CPU takes half a minute, ten of them before the first
    logging step):

        epoch 3/30 [ 47 %] step 21/45, 612 img/s, loss 0.0431, lr 0.000976, 12 s left in the epoch

    Only host values, so no step waits for the device: the rate and the time left are the epoch's images and
    steps over its time since its start (or the resume), the lr is the optimizer's (a Python number), the loss
    the last logging step's (``StepMetrics`` reads it there; none before the epoch's first). Rank 0 only."""

    def __init__(self, step_metrics: StepMetrics, every_s: float) -> None:
        self.step_metrics, self.every_s = step_metrics, every_s
        self._last = self._epoch_t0 = 0.0
        self._first_batch = self._images = 0

    def _start(self, first_batch: int) -> None:
        self._last = self._epoch_t0 = time.perf_counter()
        self._first_batch = first_batch  # the batches an epoch resumed in its middle had done before
        self._images = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start(trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[0])
        now = time.perf_counter()
        if not trainer.is_global_zero or now - self._last < self.every_s or \
                at_epochs_last_batch(trainer):  # the epoch's own line follows
            return
        self._last = now
        print(self.line(trainer, batch_idx + 1, now), flush=True)

    def line(self, trainer, done: int, now: float) -> str:
        total = trainer.num_training_batches
        seconds = max(now - self._epoch_t0, 1e-9)
        rate = (done - self._first_batch) / seconds  # batches a second this epoch
        left = (total - done) / rate if rate > 0 and total != float("inf") else None
        _, replicas = data_parallel_rank_and_size(trainer)  # the processes of a split pair share images
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        lr = lr if isinstance(lr, (int, float)) else self.step_metrics.lr  # a tensor lr is read on logging steps only
        items = [f"step {done}/{total}", f"{self._images * replicas / seconds:.0f} img/s"]
        if self.step_metrics.loss is not None:
            items.append(f"loss {self.step_metrics.loss:.4g}")
        items.append(f"lr {lr:.3g}")
        if left is not None:
            items.append(f"{_duration(left)} left in the epoch")
        share = f"[{100 * done / total:3.0f} %] " if total != float("inf") else ""
        return f"epoch {epoch_number(trainer)}/{trainer.max_epochs} {share}" + ", ".join(items)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"
