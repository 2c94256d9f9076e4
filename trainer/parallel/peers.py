"""When another process of a run is gone: a node lost, a process killed or hung.

The collectives report it (gloo and NCCL see the closed connection at once; a hung peer after the
process group's timeout). Each surviving process then stops with one message that says so and where the
last checkpoint is, instead of a backend traceback. Under Slurm the job requeues itself, as after a
preemption, and the requeued job resumes from that checkpoint in the same run folder; a run that keeps
losing peers stops requeuing after ``MAX_REQUEUES`` restarts, so a fault that is not a lost node cannot
loop.
"""

import os
import subprocess
import sys
from pathlib import Path

MAX_REQUEUES = 3
# how the collectives report a peer that died (gloo: its socket closes) or hung (the process group's timeout)
LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "timed out", "Timed out",
                   "NCCL communicator was aborted", "remote process exited")


class LostPeerError(RuntimeError):
    """Another process of the run is gone (the message says what happened and how the run resumes).

    ``printed``: the message is already on the console (under Slurm it is printed before the requeue, which
    stops the job step at once)."""

    printed = False


_preempted: list[Path] = []  # set once this job has answered Slurm's preemption warning (slurm_preemption.py)


def note_preempted(checkpoint: Path) -> None:
    """This process saved ``checkpoint`` after Slurm's warning and the job is requeued: Slurm stops it next, so a
    peer lost from now on is that stop (the first process it ends), not a fault."""
    _preempted[:] = [checkpoint]


def preempted() -> Path | None:
    """The preemption checkpoint this job saved before its requeue, or None."""
    return _preempted[0] if _preempted else None


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a collective failing because another process of the run is gone."""
    import torch.distributed as dist

    while error is not None:
        if isinstance(error, dist.DistError) or (
                isinstance(error, RuntimeError) and any(sign in str(error) for sign in LOST_PEER_SIGNS)
                and dist.is_available() and dist.is_initialized()):
            return True
        error = error.__cause__ or error.__context__
    return False


def requeue_plan() -> tuple[str | None, str]:
    """This Slurm job's id when it should requeue (None otherwise), and what the message says about it."""
    job, restarts = os.environ.get("SLURM_JOB_ID"), int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if not job:
        return None, ""
    if restarts >= MAX_REQUEUES:
        return None, f"the Slurm job is not requeued: it has restarted {restarts} times already"
    return job, (f"requeuing Slurm job {job} (restart {restarts + 1} of at most {MAX_REQUEUES}): the requeued job "
                 f"resumes from it")


def requeue(job: str) -> None:
    """``scontrol requeue`` (from any surviving process; the first one wins). Slurm then stops this job step at
    once, so the message is printed before this call."""
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode and "pending" not in done.stderr.lower():
        print(f"error: requeuing Slurm job {job} failed ({done.stderr.strip()}); scontrol requeue {job} resumes it",
              file=sys.stderr, flush=True)


def lost_peer_error(error: BaseException, output_dir: Path, requeued: str) -> LostPeerError:
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "?"))
    world = os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "?"))
    last = output_dir / "checkpoints" / "last.ckpt"
    where = f"its last checkpoint is {last}" if last.exists() else "it has no checkpoint yet"
    resume = requeued or f"start the same command again with ckpt_path={last} to resume"
    cause = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    return LostPeerError(f"process {rank} of {world} lost contact with another process of this run ({cause}). A node "
                         f"or process has died or hung, so the run stops here instead of waiting; {where}; {resume}.")
