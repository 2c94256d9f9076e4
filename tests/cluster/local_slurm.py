"""A real local Slurm for the cluster tests (tests/cluster/local_slurm.sh starts it; the fixtures, one node or two
nodes on this machine, are in conftest.py), and what the tests do with a job (submit it, read its state, wait for
it or its files)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import PROJECT

# CPU and tiny-data overrides of the real scripts: ResNet-18 at 64 px, 4 steps of 8 images an epoch
CPU = ["--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--nodes=1", "--time=15"]
TINY = ["model=resnet18", "data=digits", "model.input_size=64", "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2", "data.batch_size=8", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu"]  # the scripts ask for GPUs (trainer.accelerator=gpu); these tests have none


def local_slurm(*args: str):
    """A running local Slurm (started when it can be), as the environment of its commands; skipped with the
    reason where it cannot, never in CI."""
    def unavailable(reason: str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests, but {reason}")
        pytest.skip(reason)

    if not shutil.which("sbatch"):
        unavailable("Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)")
    script = str(PROJECT / "tests" / "cluster" / "local_slurm.sh")
    started = subprocess.run(["bash", script, "start", *args], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        unavailable(f"a local Slurm could not be started: {started.stderr.strip()}")
    yield {**os.environ, "SLURM_CONF": started.stdout.strip().splitlines()[-1], "PYTHON": sys.executable}
    if "started Slurm" in started.stderr:  # stop what this session started; leave a running cluster alone
        subprocess.run(["bash", script, "stop", *args[:1]], timeout=60)


def sbatch(slurm_env: dict, folder: Path, script: str, *args: str, options: tuple = ()) -> str:
    """Submits a script of slurm/ with the CPU options (then ``options``, which override them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["sbatch", "--parsable", *CPU, *options, str(PROJECT / "slurm" / script), *args], cwd=folder,
                         env=slurm_env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().split(";")[0]


def job_state(slurm_env: dict, job: str) -> dict:
    shown = subprocess.run(["scontrol", "show", "job", job], env=slurm_env, capture_output=True, text=True,
                           timeout=30)
    assert shown.returncode == 0, f"scontrol show job {job}: {shown.stderr.strip()}"  # e.g. the controller died
    return dict(re.findall(r"(\w+)=(\S+)", shown.stdout))


def wait_for_file(slurm_env: dict, job: str, path: Path, timeout: float = 300) -> None:
    """Waits until the running job has written ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline and job_state(slurm_env, job)["JobState"] in ("PENDING", "RUNNING")
        time.sleep(0.5)


def preempt_after_first_epoch(slurm_env: dict, job: str, run: Path) -> dict:
    """Sends USR2, as `#SBATCH --signal=USR2@120` does before the time limit, once the run has a
    checkpoint; returns the job's state once it has completed."""
    wait_for_file(slurm_env, job, run / "checkpoints" / "last.ckpt")
    subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True, timeout=30)
    return wait_for(slurm_env, job)


ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "REQUEUE_HOLD", "REQUEUE_FED")


def wait_for(slurm_env: dict, job: str, states=("COMPLETED",), timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(slurm_env, job)
        if state.get("JobState") in states:
            return state
        if state.get("JobState") in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            break
        time.sleep(1)
    raise AssertionError(f"job {job} is {state.get('JobState')}, not {states}")
