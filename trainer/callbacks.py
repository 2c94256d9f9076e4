"""Callbacks the trainer always uses: host-side metrics, the progress bar, the non-finite loss guard, W&B."""

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector

from data_pipelines.datamodule import data_parallel_rank_and_size

log = logging.getLogger(__name__)


def is_logging_step(trainer) -> bool:
    """After the optimizer step of this batch: the steps on which the logger writes (and may read the device)."""
    return trainer.global_step % trainer.log_every_n_steps == 0


class StartupReport(pl.Callback):
    """Says once, at the start of fitting, what the run runs on: processes, nodes, devices, precision,
    the batch globally and per process, the learning rate after scaling, DALI's threads and decoder."""

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        device = trainer.strategy.root_device
        _, replicas = data_parallel_rank_and_size(trainer)
        data = trainer.datamodule
        lines = [f"runs on: {trainer.world_size} process(es) = {trainer.num_nodes} node(s) x {trainer.num_devices}, "
                 f"one {device.type.upper()} device each ({type(trainer.strategy).__name__}), precision "
                 f"{trainer.precision}"]
        if data is not None and hasattr(data, "threads"):
            lines.append(f"data: {data.name}, global batch {data.batch_size} = {replicas} replica(s) x "
                         f"{data.batch_size // replicas}; DALI {data.threads} thread(s) per process "
                         f"({data.threads_how}), decoder {data.decoder_for_device()[0]}")
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            lines.append(f"optimizer: {type(trainer.optimizers[0]).__name__}, lr {group['lr']:g} (after scaling to "
                         f"the global batch), momentum {group.get('momentum', '-')}, weight decay "
                         f"{group.get('weight_decay', '-')}")
        log.info("\n".join(lines))


class HostMetrics(pl.Callback):
    """Logs what the host knows without reading the device, every ``log_every_n_steps``: ``train/img_per_s``
    (all replicas together) and ``train/lr``; and the epoch time.

    Logged only on logging steps: a Python number becomes a device tensor when logged, a copy that
    waits for the GPU. The rate is timed on the host between logging steps, with no device
    synchronisation: over a window of steps the host cannot run ahead of the device by more than the
    queue depth, so the rate is right.
    """

    def __init__(self) -> None:
        self._t0 = self._epoch_t0 = self._lr = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = self._epoch_t0 = time.perf_counter()
        self._images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the step's own (an epoch schedule moves it after)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[0])
        if is_logging_step(trainer):
            now = time.perf_counter()
            _, replicas = data_parallel_rank_and_size(trainer)  # the processes of a split pair share images
            rate = self._images * replicas / max(now - self._t0, 1e-9)
            pl_module.log_dict({"train/img_per_s": rate, "train/lr": self._lr}, on_step=True, on_epoch=False)
            self._t0, self._images = now, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("train/epoch_time_s", time.perf_counter() - self._epoch_t0, on_step=False, on_epoch=True,
                      sync_dist=True)  # the mean over processes


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, redrawn on the logging steps only, with the training loss.

    The stock bar reads its values from the device after every step; on a GPU each read waits for
    the queued work to finish, so the bar would cost a sync per step.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if is_logging_step(trainer) or batch_idx + 1 == self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            metrics["train/loss"] = f"{float(loss):.3f}"
        return metrics


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """Stops the run at a NaN/inf loss, naming the step, and never lets a checkpoint be written after it.

    The test runs on the device every step (``isfinite`` into a flag that remembers the first bad
    step); the host reads the flag only every ``log_every_n_steps`` steps, at the end of each epoch
    and before any checkpoint is written, so there is no host sync per step. The checkpoints written
    before the bad step are left as they are.
    """

    def __init__(self, last_ckpt: str | Path | None = None) -> None:
        self._first_bad: torch.Tensor | None = None
        self.last_ckpt = Path(last_ckpt) if last_ckpt else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach())
        step = torch.full_like(self._first_bad, trainer.global_step)  # this batch's step (already counted)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        if is_logging_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)  # raising here aborts the save before anything is written

    def check(self, trainer) -> None:
        if self._first_bad is None:
            return
        step = int(self._first_bad)
        if step >= 0:
            last = self.last_ckpt if self.last_ckpt is not None and self.last_ckpt.is_file() else None
            kept = (f"The last good checkpoint is kept: {last}; resume from it with ckpt_path={last} after "
                    f"lowering optim.lr." if last else "No checkpoint had been written yet; lower optim.lr.")
            raise NonFiniteLossError(f"the training loss became NaN/inf at global step {step} (epoch "
                                     f"{trainer.current_epoch}); training stopped. {kept}")


class WandbRun(pl.Callback):
    """The W&B side of a run: best-and-last summaries, and the run id in every checkpoint (so a run resumed
    from it continues the same W&B run). Touches the W&B run only once fitting starts, on rank 0."""

    def __init__(self, logger) -> None:
        self.logger = logger if type(logger).__name__ == "WandbLogger" else None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.logger is not None and trainer.is_global_zero:
            for metric in ("val/top1_err", "val/top5_err"):  # the summary keeps the best and the last value
                self.logger.experiment.define_metric(metric, summary="min,last")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.logger is not None and trainer.is_global_zero:
            checkpoint["wandb_run_id"] = self.logger.version


class SlurmPreemption(pl.Callback):
    """Slurm's warning before the time limit (``#SBATCH --signal=USR2@120``): a checkpoint, then a requeue.

    Lightning's own handler saves from inside the signal handler, wherever each process happens to
    be; under ``two_gpu_split`` that save gathers the towers' weights, and a gather can pair with the
    peer's pending activation exchange. Here the handler only notes the signal. On the next logging
    step every process learns whether any of them got it (one reduction, where the host reads the
    device anyway), all write ``hpc_ckpt_N.ckpt`` at that same step, and rank 0 runs ``scontrol
    requeue``. Training goes on until Slurm stops the job; the requeued job resumes from that file.
    """

    def __init__(self, signum: int = signal.SIGUSR2) -> None:
        self.signum, self.received, self._previous = signum, False, None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._previous = signal.signal(self.signum, self._note)

    def _note(self, signum, frame) -> None:
        self.received = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not is_logging_step(trainer) or not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        self.received = False
        # Lightning's next hpc_ckpt_N name: the one its resume on Slurm (`_hpc_resume_path`) looks for
        path = _CheckpointConnector.hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)  # every process, at this same step
        if trainer.is_global_zero:
            job = os.environ["SLURM_JOB_ID"]
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode == 0:
                log.info("Requeued SLURM job: %s (checkpoint %s)", job, path)
            else:
                log.warning("saved %s; requeuing SLURM job %s failed: %s", path, job, result.stderr.strip())

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
