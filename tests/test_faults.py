"""The fault model in one place: what a long run meets (kills, shared folders, full disks, bad files, mistaken
resumes) and what the tool does about each. Every test here failed on the code before its fix."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT, wandb_inspect

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "logger=none", "schedule=constant"]


def start(cwd: Path, cache: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m trainer ARGS`` started in ``cwd`` as a user starts it (the session's digits cache)."""
    full_env = {**os.environ, "CONVNET_CACHE": str(cache), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "trainer", "trainer.accelerator=cpu", *args], cwd=cwd,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def run_folder_line(output: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("run folder:"))


# 1, 2. Each run owns its folder; an existing run folder is continued only by its own command or ckpt_path ------

def config_seed(folder: Path) -> str:
    return next(line.split(":")[1].strip() for line in (folder / ".hydra" / "config.yaml").read_text().splitlines()
                if line.startswith("seed:"))


def test_runs_started_together_own_their_folders_and_a_folder_is_continued_only_as_itself(tmp_path, digits_cache):
    # One name for all of them, as in one second (or one Slurm job: the folder is keyed on the job id)
    job = {"SLURM_JOB_ID": "4242"}
    runs = [start(tmp_path, digits_cache, f"seed={seed}", *TINY, env=job) for seed in (1, 7, 9)]
    results = [finish(p) for p in runs]
    assert [code for code, _ in results] == [0, 0, 0], results
    folders = [tmp_path / run_folder_line(out) for _, out in results]
    assert sorted(f.name for f in folders) == ["4242", "4242-1", "4242-2"]
    for seed, folder in zip(("1", "7", "9"), folders):
        assert config_seed(folder) == seed  # each folder describes its own run
        console = (folder / "console.log").read_text()
        assert sum(line.startswith("--- 20") for line in console.splitlines()) == 1  # and only it wrote there
    seven = folders[1]

    # a new config pointed at an existing run folder: refused, nothing written or replaced
    before = {p: p.read_bytes() for p in seven.rglob("*") if p.is_file()}
    code, out = finish(start(tmp_path, digits_cache, f"hydra.run.dir={seven}", "seed=1", "optim.lr=0.01", *TINY))
    assert code == 1 and "Traceback" not in out
    assert f"hydra.run.dir={seven} is an existing run folder" in out
    assert f"ckpt_path={seven / 'checkpoints' / 'last.ckpt'}" in out and "leave out hydra.run.dir" in out
    assert {p: p.read_bytes() for p in seven.rglob("*") if p.is_file()} == before
    # ...as is a folder of something else
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, out = finish(start(tmp_path, digits_cache, f"hydra.run.dir={mine}", *TINY))
    assert code == 1 and "is not empty and is not a run folder of this tool" in out
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    # a requeued job (Slurm sets SLURM_RESTART_COUNT) continues the folder of its own command only
    requeued = {**job, "SLURM_RESTART_COUNT": "1"}
    code, out = finish(start(tmp_path, digits_cache, "seed=7", *TINY, env=requeued))
    assert code == 0 and tmp_path / run_folder_line(out) == seven and "resuming from" in out, out
    code, out = finish(start(tmp_path, digits_cache, "seed=5", *TINY, env=requeued))
    assert code == 0 and run_folder_line(out).endswith("4242-3"), out

    # the documented way on: ckpt_path, in the run's own folder, keeping its config
    config = (seven / ".hydra" / "config.yaml").read_bytes()
    code, out = finish(start(tmp_path, digits_cache, f"ckpt_path={seven / 'checkpoints' / 'last.ckpt'}",
                             *TINY[1:], "trainer.max_epochs=2"))
    assert code == 0 and tmp_path / run_folder_line(out) == seven, out
    assert (seven / ".hydra" / "config.yaml").read_bytes() == config


def test_an_empty_folder_is_claimed_once_and_sweeps_get_folders_of_their_own(tmp_path, monkeypatch):
    from trainer.__main__ import claim_sweep_folder
    from trainer.run_folder import RunFolderError, claim_run_folder

    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_run_folder(empty, given=True, overrides=[], environ={}) == empty and (empty / ".hydra").is_dir()
    with pytest.raises(RunFolderError, match="existing run folder"):  # the second run to name it
        claim_run_folder(empty, given=True, overrides=[], environ={})
    monkeypatch.chdir(tmp_path)
    first, second = (claim_sweep_folder(["-m", "optim.lr=0.1,0.2"]) for _ in range(2))
    dirs = [next(o.split("=", 1)[1] for o in x if o.startswith("hydra.sweep.dir=")) for x in (first, second)]
    assert dirs[0] != dirs[1] and all((tmp_path / d).is_dir() for d in dirs)


# 3. A kill -9 loses no validation that reached a checkpoint -------------------------------------------------------

def validations_in(wandb_dir: Path) -> dict[int, float]:
    """epoch -> val/top1_err over every W&B folder of the run (each start writes one), read by the W&B CLI."""
    from trainer.tracking import validation_history

    found = {}
    for part in sorted(wandb_dir.glob("offline-run-*")):
        try:
            found.update({int(h["epoch"]): h["val/top1_err"] for h in validation_history(part)})
        except subprocess.CalledProcessError:  # a part with nothing but its header
            pass
    return found


def test_a_kill_right_after_a_validation_loses_nothing_of_it_in_wandb(tmp_path, digits_cache):
    run = ["hydra.run.dir=run", "trainer.max_epochs=3", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
           "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "schedule=constant"]
    process = start(tmp_path, digits_cache, *run)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    while not last.exists() and process.poll() is None:  # epoch 1 validated and checkpointed: kill at once
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    from trainer.checkpoints import load_checkpoint

    saved = load_checkpoint(last)
    assert saved["epoch"] == 0 or saved["epoch"] == 1  # (Lightning counts the finished epoch after saving)
    code, out = finish(start(tmp_path, digits_cache, f"ckpt_path={last}", *run[1:]))
    assert code == 0, out
    assert "validation result(s) of the checkpoint were missing from the run's files" in out
    found = validations_in(tmp_path / "run" / "wandb")
    assert sorted(found) == [0, 1, 2], found  # every epoch's validation is in the W&B run
    parts = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and len({p.name.rsplit("-", 1)[1] for p in parts}) == 1  # two starts, one run id
