"""The loss, learning rate and throughput to the loggers on logging steps, and each epoch's line."""

import time

import pytorch_lightning as pl
import torch

from data_pipelines.sharding import data_parallel_rank_and_size

from ...results.paper_comparison import coverage
from ..steps import epoch_number, is_logging_step, logs_after_this_step


class StepMetrics(pl.Callback):
    """Every ``log_every_n_steps`` steps: ``train/loss``, ``train/lr`` and ``train/img_per_s`` (all replicas
    together) to the loggers; once an epoch, ``train/epoch_time_s``, and a line on the console with the
    epoch's validation errors, its mean training loss, its learning rate and its time (the progress bar is
    redrawn in place, and shows nothing when the output is not a terminal: a Slurm log, ``nohup``; the line
    stays, there and in the run's console.log).

    Written straight to the loggers (``Logger.log_metrics``, at the step Lightning's own logging would
    use): ``LightningModule.log`` costs about 0.35 ms of host time per call, a few per cent of a fast
    GPU's step if paid on every step. Nothing is read from the device between logging steps: the loss
    stays a tensor until then (the epoch's sum of losses is added up on the device and read at its end),
    the learning rate and the rate are host values. The rate is timed on the host between logging
    steps, with no device synchronisation: over a window of steps the host cannot run ahead of the
    device by more than the queue depth, so the rate is right. ``loss`` keeps the last logged value (the
    progress bar shows it). An epoch resumed in its middle is timed and averaged from the resume on, and
    its line says so; its partial time is not logged as an epoch's.
    """

    def __init__(self) -> None:
        self._t0 = self._epoch_t0 = self._lr = self._epoch_lr = 0.0
        self._images = self._epoch_steps = 0
        self._loss_sum: torch.Tensor | None = None
        self._resumed_mid_epoch = False
        self.loss: float | None = None
        self.lr = self.img_per_s = 0.0

    def _start_epoch(self, trainer, resumed: bool) -> None:
        self._t0 = self._epoch_t0 = time.perf_counter()
        self._images = self._epoch_steps = 0
        self._loss_sum = None
        self._resumed_mid_epoch = resumed
        self._epoch_lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_start(self, trainer, pl_module) -> None:
        # a run resumed in mid-epoch gets no on_train_epoch_start for the epoch it resumes
        self._start_epoch(trainer, resumed=trainer.fit_loop.epoch_loop.batch_progress.current.completed > 0)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start_epoch(trainer, resumed=False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if logs_after_this_step(trainer):  # the step's own lr (an epoch schedule moves it after)
            self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[0])
        loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
        if trainer.accumulate_grad_batches > 1:  # Lightning hands back the loss divided by it (what backward took)
            loss = loss * trainer.accumulate_grad_batches
        self._loss_sum = loss.clone() if self._loss_sum is None else self._loss_sum.add_(loss)  # on the device
        self._epoch_steps += 1
        if not is_logging_step(trainer):
            return
        now = time.perf_counter()
        _, replicas = data_parallel_rank_and_size(trainer)  # the processes of a split pair share images
        self.loss = float(loss)  # the logging step's host read
        self.lr, self.img_per_s = self._lr, self._images * replicas / max(now - self._t0, 1e-9)
        metrics = {"train/loss": self.loss, "train/lr": self.lr, "train/img_per_s": self.img_per_s,
                   "epoch": epoch_number(trainer)}
        for logger in trainer.loggers:  # rank 0 only: Lightning's loggers log from global rank 0
            logger.log_metrics(metrics, step=trainer.global_step - 1)  # Lightning's step: optimizer steps before
        self._t0, self._images = now, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._epoch_t0
        # Lightning adds ``epoch`` from 0 to what it logs unless it is there: counted from 1, as everywhere
        pl_module.log("epoch", float(epoch_number(trainer)), on_step=False, on_epoch=True, sync_dist=True)
        if not self._resumed_mid_epoch:  # the mean over processes
            pl_module.log("train/epoch_time_s", seconds, on_step=False, on_epoch=True, sync_dist=True)
        # Every process reads the metrics: reading computes the values just logged with sync_dist, and each of those
        # is a reduction over the processes. Read on rank 0 alone, it waited for peers that had moved on to the next
        # collective (a preemption's checkpoint gathering the split's towers): both hung.
        metrics = trainer.callback_metrics
        if trainer.is_global_zero:
            print(self.epoch_line(trainer, seconds, metrics), flush=True)

    def epoch_line(self, trainer, seconds: float, metrics: dict) -> str:
        """``epoch 4/30: val top-1 error 1.84 % (best 1.69 %), top-5 0.02 %, val loss 0.061, train loss 0.0123,
        lr 0.00095, 41 s`` (Lightning calls on_train_epoch_end once the epoch's validation is done). The
        train loss is the mean over the epoch's steps (this process's batches)."""
        score = getattr(trainer.checkpoint_callback, "best_model_score", None)
        monitor = getattr(trainer.checkpoint_callback, "monitor", "val/top1_err")  # the run's result (eval_weights)

        def best(key: str) -> str:  # the checkpoint callbacks run after this one (Lightning's order): this epoch too
            return f" (best {min(float(score), float(metrics[key])):.2f} %)" if score is not None and key == monitor \
                else ""

        items = []
        if "val/top1_err" in metrics:
            part = coverage(metrics.get("val/images"), metrics.get("val/set_images"))
            items += [f"val top-1 error {float(metrics['val/top1_err']):.2f} %{best('val/top1_err')}"
                      f"{f' on {part}' if part else ''}",
                      f"top-5 {float(metrics['val/top5_err']):.2f} %", f"val loss {float(metrics['val/loss']):.4g}"]
        if "val_ema/top1_err" in metrics:  # the weights' moving average (callbacks/ema.py)
            items += [f"EMA top-1 {float(metrics['val_ema/top1_err']):.2f} %{best('val_ema/top1_err')}",
                      f"EMA top-5 {float(metrics['val_ema/top5_err']):.2f} %"]
        if self._loss_sum is not None and self._epoch_steps:
            items.append(f"train loss {float(self._loss_sum) / self._epoch_steps:.4g}")
        since = " since the resume" if self._resumed_mid_epoch else ""
        items += [f"lr {self._epoch_lr:.3g}", f"{seconds:.0f} s{since}"]  # the epoch's first lr
        return f"epoch {epoch_number(trainer)}/{trainer.max_epochs}: " + ", ".join(items)
