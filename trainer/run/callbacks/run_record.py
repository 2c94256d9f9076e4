"""Callbacks the trainer always uses: host-side metrics, the progress bar, the non-finite loss guard, W&B."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector

from data_pipelines.sharding import data_parallel_rank_and_size

from . import interrupt
from .checkpoints import at_epochs_last_batch

log = logging.getLogger(__name__)


def is_logging_step(trainer) -> bool:
    """After the optimizer step of this batch: the steps on which the logger writes (and may read the device)."""
    return trainer.global_step % trainer.log_every_n_steps == 0


def logs_after_this_step(trainer) -> bool:
    """Before the optimizer step of this batch (``training_step``, ``on_train_batch_start``): whether the
    logger writes after it. Lightning writes when ``(optimizer steps so far + 1) % log_every_n_steps == 0``
    (``_LoggerConnector.should_update_logs``); one optimizer step per batch here, so that is the global step."""
    return (trainer.global_step + 1) % trainer.log_every_n_steps == 0


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
        self.wandb = logger if type(logger).__name__ == "WandbLogger" else None
        self.val_history: list[dict] = []
        self.batch_size = batch_size  # the global batch: a mid-epoch checkpoint resumes at it only
        self.title, self.recipe = title, recipe

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        log.info("\n".join(self.describe(trainer)))
        if self.wandb is not None:
            for metric in ("val/top1_err", "val/top5_err"):  # the summary keeps the best and the last value
                self.wandb.experiment.define_metric(metric, summary="min,last")

    def on_train_start(self, trainer, pl_module) -> None:
        if self.wandb is not None and trainer.is_global_zero and self.val_history:  # a resumed run
            from .tracking import validations_logged

            run = self.wandb.experiment
            logged = validations_logged(Path(run.dir).parent.parent, run.id, current=Path(run.dir).parent)
            missing = [h for h in self.val_history if h["trainer/global_step"] not in logged]
            for record in missing:
                run.log(record)
            if missing:
                log.info("W&B: %d validation result(s) of the checkpoint were missing from the run's files "
                         "(epochs %s) and are logged again", len(missing),
                         ", ".join(str(h["epoch"] + 1) for h in missing))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:  # the step Lightning logs epoch-end results at (_LoggerConnector.log_metrics)
            self.val_history.append({**metrics, "epoch": trainer.current_epoch,
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
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        paper = f" ({CATALOGUE[name].paper})" if name in CATALOGUE else ""
        shape = f"{hparams.get('in_channels', '?')} x {hparams.get('input_size', '?')} x {hparams.get('input_size', '?')}"
        lines = [self.title or name,
                 f"  model: {name}{paper}, {params:,} trainable parameters, input {shape}, "
                 f"{hparams.get('num_classes', '?')} classes",
                 f"  runs on: {trainer.world_size} process(es) = {trainer.num_nodes} node(s) x {trainer.num_devices}, "
                 f"one {device.type.upper()} device each ({type(trainer.strategy).__name__}), precision "
                 f"{trainer.precision}"]
        if data is not None and hasattr(data, "threads"):
            sizes = (f" ({len(data.listing.files['train']):,} train / {len(data.listing.files['val']):,} val images "
                     f"in {data.listing.root})" if getattr(data, "listing", None) else "")
            lines.append(f"  data: {data.name}{sizes}, global batch {data.batch_size} = {replicas} replica(s) x "
                         f"{data.batch_size // replicas}; DALI {data.threads} thread(s) per process "
                         f"({data.threads_how}), decoder {data.decoder_for_device()[0]}")
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            lines.append(f"  optimizer: {type(trainer.optimizers[0]).__name__}, lr {group['lr']:g} (after scaling "
                         f"to the global batch), momentum {group.get('momentum', '-')}, weight decay "
                         f"{group.get('weight_decay', '-')}")
        if self.recipe:
            lines.append(f"  recipe: {self.recipe}")
        lines.append(f"  run folder: {trainer.default_root_dir} (console.log: this console; run.log: every "
                     f"library's log lines)")
        if self.wandb is not None:
            run = self.wandb.experiment
            lines.append(f"  W&B: {getattr(run, 'url', None) or f'offline, {Path(run.dir).parent}'}")
        return lines


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
        self._loss_sum = loss.clone() if self._loss_sum is None else self._loss_sum.add_(loss)  # on the device
        self._epoch_steps += 1
        if not is_logging_step(trainer):
            return
        now = time.perf_counter()
        _, replicas = data_parallel_rank_and_size(trainer)  # the processes of a split pair share images
        self.loss = float(loss)  # the logging step's host read
        self.lr, self.img_per_s = self._lr, self._images * replicas / max(now - self._t0, 1e-9)
        metrics = {"train/loss": self.loss, "train/lr": self.lr, "train/img_per_s": self.img_per_s,
                   "epoch": trainer.current_epoch}
        for logger in trainer.loggers:  # rank 0 only: Lightning's loggers log from global rank 0
            logger.log_metrics(metrics, step=trainer.global_step - 1)  # Lightning's step: optimizer steps before
        self._t0, self._images = now, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._epoch_t0
        if not self._resumed_mid_epoch:  # the mean over processes
            pl_module.log("train/epoch_time_s", seconds, on_step=False, on_epoch=True, sync_dist=True)
        if trainer.is_global_zero:
            print(self.epoch_line(trainer, seconds), flush=True)

    def epoch_line(self, trainer, seconds: float) -> str:
        """``epoch 4/30: val top-1 error 1.84 % (best 1.69 %), top-5 0.02 %, val loss 0.061, train loss 0.0123,
        lr 0.00095, 41 s`` (Lightning calls on_train_epoch_end once the epoch's validation is done). The
        train loss is the mean over the epoch's steps (this process's batches)."""
        metrics, score = trainer.callback_metrics, getattr(trainer.checkpoint_callback, "best_model_score", None)
        items = []
        if "val/top1_err" in metrics:
            top1 = float(metrics["val/top1_err"])  # the checkpoint callbacks run after this one (Lightning's order):
            best = f" (best {min(float(score), top1):.2f} %)" if score is not None else ""  # this epoch counts too
            items += [f"val top-1 error {top1:.2f} %{best}",
                      f"top-5 {float(metrics['val/top5_err']):.2f} %", f"val loss {float(metrics['val/loss']):.4g}"]
        if self._loss_sum is not None and self._epoch_steps:
            items.append(f"train loss {float(self._loss_sum) / self._epoch_steps:.4g}")
        since = " since the resume" if self._resumed_mid_epoch else ""
        items += [f"lr {self._epoch_lr:.3g}", f"{seconds:.0f} s{since}"]  # the epoch's first lr
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: " + ", ".join(items)


class ProgressLines(pl.Callback):
    """Off a terminal (a Slurm log, ``nohup``, ``> file``), where the progress bar draws nothing: a plain line
    every ``every_s`` seconds (``progress_every_s``), on a logging step (its values are host values there):

        epoch 3/30 [ 47 %] step 21/45, 612 img/s, loss 0.0431, lr 0.000976, 12 s left in the epoch

    The loss is the last logged step's. Rank 0 only."""

    def __init__(self, step_metrics: StepMetrics, every_s: float) -> None:
        self.step_metrics, self.every_s = step_metrics, every_s
        self._last = self._epoch_t0 = 0.0
        self._first_batch = 0

    def _start(self, first_batch: int) -> None:
        self._last = self._epoch_t0 = time.perf_counter()
        self._first_batch = first_batch  # the batches an epoch resumed in its middle had done before

    def on_train_start(self, trainer, pl_module) -> None:
        self._start(trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if not trainer.is_global_zero or not is_logging_step(trainer) or now - self._last < self.every_s or \
                at_epochs_last_batch(trainer):  # the epoch's own line follows
            return
        self._last = now
        print(self.line(trainer, batch_idx + 1, now), flush=True)

    def line(self, trainer, done: int, now: float) -> str:
        total = trainer.num_training_batches
        rate = (done - self._first_batch) / max(now - self._epoch_t0, 1e-9)  # batches a second this epoch
        left = (total - done) / rate if rate > 0 and total != float("inf") else None
        metrics = self.step_metrics
        items = [f"step {done}/{total}", f"{metrics.img_per_s:.0f} img/s"]
        if metrics.loss is not None:
            items.append(f"loss {metrics.loss:.4g}")
        items.append(f"lr {metrics.lr:.3g}")
        if left is not None:
            items.append(f"{_duration(left)} left in the epoch")
        share = f"[{100 * done / total:3.0f} %] " if total != float("inf") else ""
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {share}" + ", ".join(items)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


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
        self._slots: list[torch.Tensor] = []  # views of the buffer, one per step of the window
        self._count = self._first_step = 0
        self.last_ckpt = Path(last_ckpt) if last_ckpt else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self._flags is None or self._flags.device != loss.device or self._count == len(self._slots):
            self.check(trainer)
            self._flags = torch.ones(max(1, trainer.log_every_n_steps), dtype=torch.bool, device=loss.device)
            self._slots = list(self._flags.unbind(0))
        if self._count == 0:
            self._first_step = trainer.global_step  # this batch's step (already counted)
        self._slots[self._count].copy_(torch.isfinite(loss.detach()))
        self._count += 1
        if is_logging_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)  # raising here aborts the save before anything is written

    def check(self, trainer) -> None:
        """Reads the flags of the steps since the last check (one host read); raises at the first bad one."""
        if not self._count:
            return
        window, self._count = self._flags[:self._count], 0
        if not bool(window.all()):
            step = self._first_step + int((~window).nonzero()[0, 0])
            last = self.last_ckpt if self.last_ckpt is not None and self.last_ckpt.is_file() else None
            kept = (f"The last good checkpoint is kept: {last}; resume from it with ckpt_path={last} after "
                    f"lowering optim.lr." if last else "No checkpoint had been written yet; lower optim.lr.")
            raise NonFiniteLossError(f"the training loss became NaN/inf at global step {step} (epoch "
                                     f"{trainer.current_epoch + 1}); training stopped. {kept}")


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
        self.signum, self.received, self._previous, self._at_epoch_end = signum, False, None, False

    def on_fit_start(self, trainer, pl_module) -> None:
        self._previous = signal.signal(self.signum, self._note)

    def _note(self, signum, frame) -> None:
        self.received = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not is_logging_step(trainer) or not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        self.received = False
        if at_epochs_last_batch(trainer):  # after the epoch's validation: resumed, it is not skipped
            self._at_epoch_end = True
        else:
            self._save_and_requeue(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_epoch_end:
            self._at_epoch_end = False
            self._save_and_requeue(trainer)

    def _save_and_requeue(self, trainer) -> None:
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


class StopOnSignal(pl.Callback):
    """Ctrl-C / SIGTERM noted; at the next step ``last.ckpt`` is written and the run stops (trainer/interrupt.py).
    At an epoch's last batch the stop waits for the epoch's validation and end: a checkpoint of the last batch
    before validation would resume with that validation skipped (``checkpoints.LastCheckpoint``)."""

    def __init__(self, last_ckpt: Path) -> None:
        self.last_ckpt, self.lost_peer, self._at_epoch_end = last_ckpt, None, False

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
        raise interrupt.RunInterrupted(
            f"stopped by {interrupt.NAMES[signum]} at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch + 1} of {trainer.max_epochs}); checkpoint: {self.last_ckpt}\n"
            f"resume with: {interrupt.resume_command(self.last_ckpt)}", signum)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A lost peer under Slurm: requeue at once, before Lightning's teardown, then say so (Slurm stops this
        job step within seconds of a task's death; trainer/peers.py)."""
        from .peers import lost_peer, lost_peer_error, requeue, requeue_plan

        if not lost_peer(exception):
            return
        # srun answers the lost task by sending SIGTERM to this one; Lightning's SIGTERM handler broadcasts to
        # the other processes (a collective with the lost peer), which raises inside whatever runs then, the
        # requeue below included. The run is ending: that signal has nothing left to do.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        job, text = requeue_plan()
        if job:
            requeue(job)
            self.lost_peer = lost_peer_error(exception, self.last_ckpt.parent.parent, text)
            self.lost_peer.printed = True
            print(f"error: {self.lost_peer}", file=sys.stderr, flush=True)
