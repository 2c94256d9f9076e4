"""Slurm's warning before the time limit: a checkpoint at the same step in every process, then a requeue."""

import logging
import os
import signal
import subprocess

import pytorch_lightning as pl
from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector

from ..run.steps import at_epochs_last_batch, is_logging_step
from .peers import note_preempted

log = logging.getLogger(__name__)


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
        trainer.save_checkpoint(path, weights_only=False)  # every process, at this same step
        note_preempted(path)  # Slurm stops the job next: a peer lost then is no fault (lost_peer.py)
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
