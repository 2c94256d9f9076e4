"""resnet152.sh as a job over two Slurm nodes (two slurmd daemons on this machine, a cluster of its own)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from local_slurm import (
    ACTIVE,
    TINY,
    job_state,
    sbatch,
    wait_for,
    wait_for_file,
)
from trainer.run.checkpoints import load_checkpoint


def test_a_two_node_job_survives_a_preemption_and_then_a_lost_process(slurm_two_nodes, tmp_path, digits_cache):
    """resnet152.sh as a 2-node job (one task per node): one DDP run over both nodes. USR2 mid-run: both nodes
    save at the same step and the job requeues; Slurm's SIGTERM then stops both at one later step with last.ckpt,
    which the requeued 2-node run resumes from. Then the training process on node 2 is killed: the one on node 1
    says so and requeues the job, which resumes from the newest checkpoint and ends."""
    env = {**slurm_two_nodes, "CONVNET_CACHE": str(digits_cache)}
    job = sbatch(env, tmp_path, "resnet152.sh", *TINY, "trainer.max_epochs=8",
                 # the local nodes' names do not resolve: the processes meet at 127.0.0.1 (on a cluster, node 1)
                 options=("--nodes=2", "--ntasks-per-node=1", "--export=ALL,MASTER_ADDR=127.0.0.1"))
    run, log = tmp_path / "outputs" / "resnet18" / job, tmp_path / f"slurm-resnet152-{job}.out"
    last = run / "checkpoints" / "last.ckpt"
    wait_for_file(env, job, last)
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=30)
    wait_for_file(env, job, run / "hpc_ckpt_1.ckpt")
    # the requeue's SIGTERM stops the first start through the stop path (last.ckpt at a later step than hpc_ckpt_1,
    # which the requeued job then resumes from); the requeued run's own first checkpoint says it is training
    deadline, since = time.monotonic() + 300, None
    while since is None or last.stat().st_mtime <= since:
        state = job_state(env, job)["JobState"]  # (a requeue passes through COMPLETING and PENDING)
        assert time.monotonic() < deadline and state != "COMPLETED" and state in ACTIVE, state
        if since is None and _trainers(job, restart="1"):
            since = last.stat().st_mtime
        time.sleep(0.2)
    (victim,) = _trainers(job, restart="1", rank="1")
    os.kill(victim, signal.SIGKILL)  # rank 1, on node 2
    state = wait_for(env, job)
    text = log.read_text()
    assert "runs on: 2 process(es) = 2 node(s) x 1, one CPU device each (DDPStrategy)" in text
    assert state["NodeList"] == "node[1-2]" and state["Restarts"] == "2"
    assert f"Requeued SLURM job: {job}" in text and "stopped by SIGTERM at global step" in text  # the preemption
    assert len(re.findall(f"resuming from {re.escape(str(last))} (in|after) epoch", text)) == 2  # each time the newest
    # the lost process, once: when Slurm stopped the preempted job, a process that outlived the other said a note
    assert text.count("lost contact with another process of this run") == 1
    assert "error: process 0 of 2 lost contact with another process of this run" in text
    assert f"requeuing Slurm job {job} (restart 2 of at most 3): the requeued job resumes from it" in text
    assert load_checkpoint(last)["global_step"] == 32
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 3 and len({f.name.rsplit("-", 1)[1] for f in folders}) == 1  # one W&B run


def _trainers(job: str, restart: str, rank: str | None = None) -> list[int]:
    """The training processes of ``job``'s start number ``restart`` (of its task ``rank``, when given)."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if _environ(pid).get("SLURM_JOB_ID") == job and "trainer" in _cmdline(pid)
            and _environ(pid).get("SLURM_RESTART_COUNT") == restart
            and (rank is None or _environ(pid).get("SLURM_PROCID") == rank)]


def _environ(pid: int) -> dict:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""
