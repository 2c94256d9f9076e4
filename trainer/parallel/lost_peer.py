"""A process of the run lost (a node died, a task was killed): under Slurm, the job requeued at once."""

import signal
import sys
from pathlib import Path

import pytorch_lightning as pl

from .peers import LostPeerError, lost_peer, lost_peer_error, preempted, requeue, requeue_plan


class RequeueOnLostPeer(pl.Callback):
    """A lost peer under Slurm: the job is requeued from Lightning's ``on_exception`` hook, before its teardown,
    then the console says so (Slurm stops the job step within seconds of a task's death; ``peers.py``). The
    message (``error``) is what ``train()`` raises after the teardown."""

    def __init__(self, run_folder: Path) -> None:
        self.run_folder, self.error = run_folder, None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not lost_peer(exception):
            return
        # srun answers the lost task by sending SIGTERM to this one; Lightning's SIGTERM handler broadcasts to
        # the other processes (a collective with the lost peer), which raises inside whatever runs then, the
        # requeue below included. The run is ending: that signal has nothing left to do.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if (saved := preempted()) is not None:  # Slurm ending the preempted job, one process first: no fault
            self.error = LostPeerError(f"Slurm is stopping this job for its requeue after the preemption warning "
                                       f"(another process of the run has stopped already); the requeued job "
                                       f"resumes from {saved}")
            self.error.printed = True
            print(f"note: {self.error}", file=sys.stderr, flush=True)
            return
        job, text = requeue_plan()
        if job:
            requeue(job)
            self.error = lost_peer_error(exception, self.run_folder, text)
            self.error.printed = True
            print(f"error: {self.error}", file=sys.stderr, flush=True)
