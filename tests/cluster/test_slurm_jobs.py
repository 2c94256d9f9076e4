"""The Slurm scripts and sweeps, unchanged, on a real local Slurm of one node (the two-node job:
test_slurm_two_nodes.py, a file of its own so that another test worker can run it at the same time)."""

import subprocess
import sys
import time
from pathlib import Path

from helpers import wandb_inspect
from local_slurm import (
    TINY,
    job_state,
    preempt_after_first_epoch,
    sbatch,
    wait_for,
    wait_for_file,
)
from trainer.run.checkpoints import load_checkpoint


def test_resnet152_script_runs_with_the_cpus_a_task_asked_for_and_the_activated_python(slurm, tmp_path,
                                                                                        digits_cache):
    """The script's job, its run folder keyed on the job id and its W&B run finished. srun is given the job's
    --cpus-per-task (Slurm >= 22.05 does not pass it on), DALI sizes its threads from the CPUs the task may
    use, and without .venv in the submit folder the exported environment's python runs the job (an activated
    conda env or venv). (The script's DDP over several tasks: test_slurm_two_nodes.py, and the split's script
    below.)"""
    env = {k: v for k, v in slurm.items() if k != "PYTHON"}
    env.update(CONVNET_CACHE=str(digits_cache), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    job = sbatch(env, tmp_path, "resnet152.sh", *TINY, "trainer.max_epochs=2",
                 options=("--ntasks-per-node=1", "--cpus-per-task=2"))
    start = time.monotonic()
    wait_for(env, job)
    print(f"job {job}: completed in {time.monotonic() - start:.0f} s")
    log = (tmp_path / f"slurm-resnet152-{job}.out").read_text()
    assert f"python: {Path(sys.executable).parent / 'python'} ({sys.prefix})" in log
    assert "DALI 1 thread(s) per process (2 CPUs usable by this process)" in log
    assert "runs on: 1 process(es) = 1 node(s) x 1, one CPU device each" in log
    assert "resnet18 / ddp / digits" in log and "epochs / steps          │ 2 / 8" in log
    run = tmp_path / "outputs" / "resnet18" / job  # keyed on the job id, not the time
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    assert wandb_inspect(wandb_run)["state"] == "finished"


def test_alexnet_two_gpu_script_runs_the_split_and_survives_preemption(slurm, tmp_path, digits_cache):
    """The split as two Slurm tasks; USR2 mid-run: both towers save at the same step, the job requeues and ends."""
    env = {**slurm, "CONVNET_CACHE": str(digits_cache)}
    job = sbatch(env, tmp_path, "alexnet_two_gpu.sh", "data=digits", "trainer.max_epochs=3", "trainer.accelerator=cpu",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.batch_size=8",
                 "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false")
    run = tmp_path / "outputs" / "alexnet" / job
    state = preempt_after_first_epoch(env, job, run)
    log = (tmp_path / f"slurm-alexnet-2gpu-{job}.out").read_text()
    assert "runs on: 2 process(es) = 1 node(s) x 2, one CPU device each (TwoGPUSplitStrategy)" in log
    assert "alexnet / two_gpu_split / digits" in log
    assert state["Restarts"] == "1" and f"Requeued SLURM job: {job}" in log and "resuming from" in log
    (hpc,) = run.glob("hpc_ckpt_*.ckpt")
    assert load_checkpoint(hpc)["state_dict"]["net.conv2.weight"].shape == (256, 48, 5, 5)  # grouped, joined
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6 and ckpt["state_dict"]["net.conv2.weight"].shape == (256, 48, 5, 5)


def test_a_point_that_sbatch_refuses_stops_the_sweep_with_one_line(slurm, tmp_path, digits_cache):
    """A point asking for GPUs on a cluster without them (this local Slurm has no gres): sbatch's own cause, in
    one line, and no submitit traceback."""
    env = {**slurm, "CONVNET_CACHE": str(digits_cache)}
    done = subprocess.run([sys.executable, "-m", "trainer", "-m", "hydra/launcher=slurm", "strategy=ddp",
                           "trainer.devices=2", "trainer.accelerator=gpu", "optim.lr=0.01,0.02",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sbatch refused sweep point #0" in errors[0] and "2 GPU(s) per node" in errors[0]
    assert "gres" in errors[0].lower() and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_sweep_is_one_slurm_job_per_point_and_a_preempted_point_resumes(slurm, tmp_path, digits_cache):
    """``-m hydra/launcher=slurm``: a 2-point sweep of 2-task DDP runs, each point its own job sized from its
    strategy; USR2 to one point: it checkpoints, requeues and resumes in its own folder and W&B run."""
    env = {**slurm, "CONVNET_CACHE": str(digits_cache)}
    sweep_dir = tmp_path / "sweep"
    sweep = subprocess.Popen(
        # the launcher's default partition has 8 GPUs a node; points that train on the CPU ask for none
        [sys.executable, "-m", "trainer", "-m", "hydra/launcher=slurm",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=15", f"hydra.sweep.dir={sweep_dir}",
         "strategy=ddp", "trainer.devices=2", "optim.lr=0.01,0.02", *TINY, "trainer.max_epochs=5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(jobs := sorted((p for p in (sweep_dir / ".submitit").glob("*") if p.name.isdigit()),
                                 key=lambda p: int(p.name))) < 2:  # submitit's folder per job id
            assert time.monotonic() < deadline and sweep.poll() is None, "the sweep did not submit its two jobs"
            time.sleep(0.5)
        job = jobs[0].name  # point #0, submitted first
        wait_for_file(env, job, sweep_dir / "0" / "checkpoints" / "last.ckpt")
        subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=30)
        out, _ = sweep.communicate(timeout=900)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, out[-3000:]
    assert "->  Slurm job" in out and "(1 node(s) x 2 task(s), 0 GPU(s) per node)" in out
    assert job_state(env, job)["Restarts"] == "1" and job_state(env, jobs[1].name)["Restarts"] == "0"
    log = (jobs[0] / f"{job}_0_log.out").read_text()  # appended to by the requeued job
    assert "runs on: 2 process(es) = 1 node(s) x 2, one CPU device each (DDPStrategy)" in log
    assert f"Requeued SLURM job: {job}" in log and "resuming from" in log
    names = set()
    for point, lr, folders in ((0, "0.01", 2), (1, "0.02", 1)):
        run = sweep_dir / str(point)
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 20  # 5 epochs of 4 steps
        wandb_runs = sorted((run / "wandb").glob("offline-run-*"))
        assert len(wandb_runs) == folders and len({f.name.rsplit("-", 1)[1] for f in wandb_runs}) == 1  # one id
        assert wandb_inspect(wandb_runs[-1])["state"] == "finished"
        names.add(f"resnet18-ddp-digits-optim.lr={lr}")
    report = subprocess.run([sys.executable, "-m", "trainer.report", str(sweep_dir), "--out", str(tmp_path / "r")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = [line for line in (tmp_path / "r" / "report.md").read_text().splitlines() if line.startswith("| resnet18")]
    assert len(rows) == 2 and {r.split(" (")[0].lstrip("| ") for r in rows} == names  # told apart by their lr
