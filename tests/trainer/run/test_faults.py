"""The fault model in one place: what a long run meets (kills, shared folders, full disks, bad files, mistaken
resumes) and what the tool does about each. Every test here failed on the code before its fix."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import callback_in_runs, ctrl_c_at, make_cfg, run_cli

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
    assert code == 2 and "Traceback" not in out
    assert f"hydra.run.dir={seven} is an existing run folder" in out
    assert f"ckpt_path={seven / 'checkpoints' / 'last.ckpt'}" in out and "leave out hydra.run.dir" in out
    assert {p: p.read_bytes() for p in seven.rglob("*") if p.is_file()} == before
    # ...as is a folder of something else
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, out = finish(start(tmp_path, digits_cache, f"hydra.run.dir={mine}", *TINY))
    assert code == 2 and "is not empty and is not a run folder of this tool" in out
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
    from trainer.run.run_folder import RunFolderError, claim_run_folder

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
    from trainer.results.tracking import validation_history

    found = {}
    for part in sorted(wandb_dir.glob("offline-run-*")):
        try:
            found.update({int(h["epoch"]): h["val/top1_err"] for h in validation_history(part)})
        except subprocess.CalledProcessError:  # a part with nothing but its header
            pass
    return found


def test_a_kill_right_after_a_validation_loses_nothing_of_it_in_wandb(tmp_path, digits_cache, request):
    """Started from a process that runs W&B itself (a notebook, this test runner): W&B's service address is in
    the environment the runs inherit, and the killed start's run id must not block the resume's."""
    import wandb

    wandb.teardown()  # this process's W&B service, if any: the one started next puts its address in the environment
    request.addfinalizer(wandb.teardown)  # (and takes it out again)
    wandb.init(mode="offline", dir=tmp_path, project="notebook").finish()
    assert os.environ.get("WANDB_SERVICE")  # the runs below inherit it
    run = ["hydra.run.dir=run", "trainer.max_epochs=3", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
           "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "schedule=constant"]
    process = start(tmp_path, digits_cache, *run)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    while not last.exists() and process.poll() is None:  # epoch 1 validated and checkpointed: kill at once
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    from trainer.run.checkpoints import load_checkpoint

    saved = load_checkpoint(last)
    assert saved["epoch"] == 0 or saved["epoch"] == 1  # (Lightning counts the finished epoch after saving)
    code, out = finish(start(tmp_path, digits_cache, f"ckpt_path={last}", *run[1:]))
    assert code == 0, out
    assert "validation result(s) of the checkpoint were missing from the run's files" in out
    found = validations_in(tmp_path / "run" / "wandb")
    assert sorted(found) == [1, 2, 3], found  # every epoch's validation is in the W&B run (counted from 1)
    parts = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and len({p.name.rsplit("-", 1)[1] for p in parts}) == 1  # two starts, one run id


# 6. A run resumes exactly where it stopped: in mid-epoch, at an epoch's last batch ------------------------------

def weights(ckpt: str) -> dict:
    from trainer.run.checkpoints import load_checkpoint

    return load_checkpoint(ckpt)["state_dict"]


def largest_difference(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)



def test_stopped_by_max_steps_or_at_an_epochs_last_batch_a_run_resumes_exactly(tmp_path, digits_cache, capsys):
    from trainer.run.interrupt import RunInterrupted
    from trainer.train import train

    common = ["trainer.max_epochs=2", "schedule=constant", "logger=none", "trainer.num_sanity_val_steps=0"]
    whole = train(make_cfg(tmp_path / "whole", digits_cache, *common))
    assert whole["global_step"] == 90  # 2 epochs of 45 steps

    # trainer.max_steps ends the run at step 10 of epoch 1's 45; resumed without it, epoch 1 goes on at step 11
    first = train(make_cfg(tmp_path / "steps", digits_cache, *common, "trainer.max_steps=10"))
    assert first["global_step"] == 10
    # 5. ...at the batch size it stopped at: another one would skip part of the epoch without a word
    from trainer.run.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match=r"written in mid-epoch \(after 10 batches of epoch 1\) at "
                                              r"data.batch_size=32.*Resume with data.batch_size=32"):
        train(make_cfg(tmp_path / "steps", digits_cache, *common, "data.batch_size=64",
                       f"ckpt_path={first['last_ckpt']}"))
    # ...and with the seed it stopped at: the epoch's order is drawn from it (142 images were read twice, 142 never)
    with pytest.raises(CheckpointError, match=r"written in mid-epoch \(in epoch 1, after 10 of its batches\) with "
                                              r"seed 42, and this run has 7;.*Resume with seed=42"):
        train(make_cfg(tmp_path / "steps", digits_cache, *common, "seed=7", f"ckpt_path={first['last_ckpt']}"))
    # 11. ...and a kill during a checkpoint write left its temporary file: the next start removes it
    folder = Path(first["last_ckpt"]).parent
    # no such pid; a live one
    dead, alive = folder / ".best.ckpt.tmp-4194303", folder / f".last.ckpt.tmp-{os.getppid()}"
    dead.write_bytes(b"half a checkpoint")
    alive.write_bytes(b"a write in progress")
    capsys.readouterr()
    resumed = train(make_cfg(tmp_path / "steps", digits_cache, *common, f"ckpt_path={first['last_ckpt']}"))
    assert not dead.exists() and alive.exists()
    alive.unlink()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert resumed["global_step"] == 90, lines
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]  # epoch 1 and its validation
    assert "since the resume" in lines[0] and "lr 0.001" in lines[0], lines[0]  # not lr 0 and the machine's uptime
    assert largest_difference(weights(whole["last_ckpt"]), weights(resumed["last_ckpt"])) <= 1e-6

    # Ctrl-C at epoch 1's last batch: the stop comes at the validation's first batch, with the training state;
    # resumed, epoch 1's whole validation runs again and the run is the whole run
    with callback_in_runs(ctrl_c_at(44)), \
            pytest.raises(RunInterrupted, match=r"at global step 45 \(in the validation of epoch 1 of 2, after its 45 "
                                                r"batches of training; resumed, the validation runs again\)"):
        train(make_cfg(tmp_path / "last-batch", digits_cache, *common))  # noticed at step 45, the last batch
    last = tmp_path / "last-batch" / "run" / "checkpoints" / "last.ckpt"
    from trainer.run.checkpoints import load_checkpoint

    assert load_checkpoint(last)["callbacks"]["RunRecord"]["val_history"] == []  # stopped before any result
    capsys.readouterr()
    resumed = train(make_cfg(tmp_path / "last-batch", digits_cache, *common, f"ckpt_path={last}"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert resumed["global_step"] == 90 and [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert largest_difference(weights(whole["last_ckpt"]), weights(resumed["last_ckpt"])) <= 1e-6
    assert resumed["val/top1_err"] == whole["val/top1_err"]
    epoch_1 = load_checkpoint(resumed["last_ckpt"])["callbacks"]["RunRecord"]["val_history"][0]
    never_stopped = load_checkpoint(whole["last_ckpt"])["callbacks"]["RunRecord"]["val_history"][0]
    assert epoch_1["epoch"] == 1 and epoch_1["val/images"] == 360  # the whole validation, scored once
    assert epoch_1["val/top1_err"] == never_stopped["val/top1_err"]


# 4. Extending a finished cosine run: a re-plan that changes nothing is refused; a warm restart trains ------------

def test_extending_a_finished_cosine_run_is_refused_unless_it_restarts_at_a_given_lr(tmp_path, digits_cache, capsys):
    from trainer.run.checkpoints import CheckpointError
    from trainer.train import train

    common = ["logger=none", "trainer.num_sanity_val_steps=0", "trainer.limit_train_batches=10"]
    done = train(make_cfg(tmp_path, digits_cache, *common, "trainer.max_epochs=2"))
    last = done["last_ckpt"]
    with pytest.raises(CheckpointError) as refused:  # its cosine ended at lr 0: a third epoch at 0 changes nothing
        train(make_cfg(tmp_path, digits_cache, *common, "trainer.max_epochs=3", "schedule.replan=true",
                       f"ckpt_path={last}"))
    message = str(refused.value)
    assert "the checkpoint's learning rate is 0 (its cosine schedule ended at epoch 2)" in message
    assert "schedule.restart_lr=<lr>" in message and f"python -m trainer model.weights={last} " \
                                                       "trainer.max_epochs=1" in message
    before = weights(last)
    capsys.readouterr()
    restarted = train(make_cfg(tmp_path, digits_cache, *common, "trainer.max_epochs=3", "schedule.restart_lr=0.0005",
                               f"ckpt_path={last}"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert restarted["global_step"] == 30 and lines == [lines[0]] and "lr 0.0005" in lines[0], lines
    assert largest_difference(before, weights(restarted["last_ckpt"])) > 1e-4  # it trained


# 7. An unverified folder: the fault is real, and the run says so once at its start --------------------------------

def test_a_jpeg_truncated_below_the_crop_decodes_silently_so_an_unverified_folder_is_named(tmp_path):
    import io

    from PIL import Image

    from data_pipelines.dali_loader import DALILoader
    from data_pipelines.datamodule import unverified_warning
    from data_pipelines.layout import list_dataset, write_usable_list

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (320, 240), (40 * i, 90, 200)).save(root / split / c / f"{i}.JPEG", quality=90)
    whole = io.BytesIO()
    Image.effect_noise((200, 800), 60).convert("RGB").save(whole, "JPEG", quality=90)  # tall: the window is its middle
    (root / "train" / "a" / "cut.JPEG").write_bytes(whole.getvalue()[: len(whole.getvalue()) * 17 // 20])
    # DALI's training crop (the alexnet preset: the centre square's rows only) decodes it without an error
    loader = DALILoader([str(root / "train" / "a" / "cut.JPEG")] * 4, [0] * 4, batch_size=4, train=True,
                        preset="alexnet", protocol="center", image_size=64, resize_size=72, channels=3,
                        num_threads=1, seed=3)
    images, _ = next(iter(loader))
    assert tuple(images.shape) == (4, 3, 64, 64)
    listing = list_dataset(root)
    warning = unverified_warning(str(root), listing)
    assert warning and f"data.root={root} has not been verified" in warning
    assert f"python -m data_pipelines.verify {root}" in warning
    for split in ("train", "val"):  # what verify leaves: the usable lists, and no warning
        write_usable_list(root, split, listing.files[split])
    assert unverified_warning(str(root), list_dataset(root)) is None


# 8-10. Clear errors, with nothing left behind -----------------------------------------------------------------

def mount_tmpfs(where: Path, size: int, readonly: bool = False) -> None:
    """A small file system of its own (a full disk, a read-only mount): root only (CI runs as root)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if readonly else ""), "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"mounting a tmpfs failed under CI: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


def unmount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_while_writing_a_checkpoint_is_one_message_with_the_last_good_checkpoint(tmp_path, digits_cache):
    from trainer.train import train

    sized = train(make_cfg(tmp_path / "sized", digits_cache, *TINY))  # how large one checkpoint is
    size = Path(sized["last_ckpt"]).stat().st_size
    disk = tmp_path / "disk"
    mount_tmpfs(disk, int(size * 1.6) + 64 * 1024)  # room for best.ckpt, not for last.ckpt beside it
    try:
        code, out = finish(start(tmp_path, digits_cache, f"hydra.run.dir={disk / 'run'}", *TINY))
        best, last = disk / "run" / "checkpoints" / "best.ckpt", disk / "run" / "checkpoints" / "last.ckpt"
        assert code == 1 and "Traceback" not in out and "OSError" not in out, out[-3000:]
        assert f"error: writing the checkpoint {last} failed: the disk is full (" in out
        assert f"The last good checkpoint is {best}, intact: make room and resume with: python -m trainer " in out
        assert f"ckpt_path={best}" in out
        assert f"error: writing the checkpoint {last} failed" in (disk / "run" / "console.log").read_text()
        assert not list((disk / "run" / "checkpoints").glob(".*tmp*"))  # the half-written file is gone
    finally:
        unmount(disk)


def test_places_a_run_cannot_write_are_refused_before_it_starts_with_one_message(tmp_path, digits_cache):
    ro = tmp_path / "ro"
    mount_tmpfs(ro, 1 << 20)
    (ro / "home").mkdir()
    (ro / "empty").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    try:
        cases = [  # (arguments, environment, what the one message says)
            ([f"hydra.run.dir={ro / 'run'}"], {}, f"cannot create the run folder {ro / 'run'}: Read-only file system"),
            ([f"hydra.run.dir={ro / 'empty'}"], {}, f"the run folder {ro / 'empty'} is read-only"),
            (["logger=wandb"], {"HOME": str(ro / "home")}, f"W&B cannot write {ro / 'home' / '.config' / 'wandb'}"),
            ([], {"HOME": ""}, "HOME is not set"),
        ]
        for args, env, message in cases:
            full = {**os.environ, "CONVNET_CACHE": str(digits_cache), **env}
            if env.get("HOME") == "":
                full.pop("HOME")
            done = subprocess.run([sys.executable, "-m", "trainer", *TINY, *args], cwd=tmp_path, env=full,
                                  capture_output=True, text=True, timeout=300)
            out = done.stdout + done.stderr
            assert done.returncode == 2 and message in out and "Traceback" not in out, (args, out[-2000:])
            assert len([line for line in out.splitlines() if line.startswith("error:")]) == 1
        assert not (tmp_path / "outputs").exists()
    finally:
        unmount(ro)
    # no HOME, and every place under it given elsewhere: HOME is not needed, nothing is written at /.cache
    places = {"CONVNET_CACHE": str(digits_cache), **{v: str(tmp_path / v.lower()) for v in
                                                    ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}
    without_home = {k: v for k, v in os.environ.items() if k != "HOME"}
    done = subprocess.run([sys.executable, "-m", "trainer", *TINY, "logger=wandb"], cwd=tmp_path,
                          env={**without_home, **places}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.glob("outputs/lenet5/*/wandb/offline-run-*")) and not Path("/.cache/convnet-classics").exists()
    places.pop("WANDB_DATA_DIR")
    done = subprocess.run([sys.executable, "-m", "trainer", *TINY], cwd=tmp_path, env={**without_home, **places},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "HOME is not set" in done.stderr and "or set WANDB_DATA_DIR (as well as " \
        "CONVNET_CACHE, WANDB_CONFIG_DIR, WANDB_CACHE_DIR)" in done.stderr, done.stderr[-2000:]


def test_two_starts_of_one_run_are_refused_while_the_first_trains(tmp_path, digits_cache):
    code, out = finish(start(tmp_path, digits_cache, *TINY))
    assert code == 0, out[-2000:]
    (ckpt,) = tmp_path.glob("outputs/lenet5/*/checkpoints/last.ckpt")
    run = ckpt.parent.parent
    first = start(tmp_path, digits_cache, f"ckpt_path={ckpt}", "trainer.max_epochs=30", "logger=none",
                  "schedule=constant", "trainer.enable_progress_bar=false")
    deadline = time.monotonic() + 120
    while not list((run / ".hydra").glob("resumed-*")):  # past its checks: it holds the folder
        assert time.monotonic() < deadline and first.poll() is None, "the first resume did not start"
        time.sleep(0.2)
    code, out = finish(start(tmp_path, digits_cache, f"ckpt_path={ckpt}", "trainer.max_epochs=30", "logger=none",
                             "schedule=constant"))
    assert code == 2 and "Traceback" not in out, out[-2000:]
    assert f"error: the run folder {run} is in use: process {first.pid} on " in out
    assert len(list((run / ".hydra").glob("resumed-*"))) == 1  # the second start wrote nothing
    first.send_signal(signal.SIGTERM)  # the first one stops as Slurm or kill would stop it
    code, out = finish(first)
    assert code == 143 and "stopped by SIGTERM at global step" in out, out[-2000:]


def test_bad_data_folders_and_files_that_are_not_checkpoints_are_refused_before_anything_exists(tmp_path, digits_cache,
                                                                                               monkeypatch, capsys):
    empty, texts, no_images = tmp_path / "empty", tmp_path / "texts", tmp_path / "no-images"
    empty.mkdir()
    for split in ("train", "val"):
        (texts / split).mkdir(parents=True)
        (texts / split / "notes.txt").write_text("not a class folder")
        (no_images / split / "a").mkdir(parents=True)
        (no_images / split / "a" / "readme.txt").write_text("no images here")
    (tmp_path / "train.log").write_text("epoch 1: ...\n")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    import shutil

    import torch

    looping, named = tmp_path / "looping", tmp_path / "named"  # the digits, with a link to its own split folder
    shutil.copytree(digits_cache / "digits", looping)
    (looping / "convnet-classics.json").unlink()
    (looping / "train" / "again").symlink_to(".")
    shutil.copytree(looping / "val", named / "val")
    shutil.copytree(looping / "val", named / "train")
    (named / "train" / "0" / "two\nlines.png").write_bytes(next((named / "train" / "0").iterdir()).read_bytes())
    two = tmp_path / "two"  # 2 classes, where ImageNet's config says 1000
    for split in ("train", "val"):
        for label in ("0", "1"):
            shutil.copytree(digits_cache / "digits" / split / label, two / split / label)
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    (tmp_path / "folder.ckpt").mkdir()
    cases = [
        (["data=imagenet", f"data.root={empty}"], f"data.root={empty}: {empty / 'train'} does not exist"),
        (["data=imagenet", f"data.root={texts}"], f"{texts / 'train'} has no class folders"),
        (["data=imagenet", f"data.root={no_images}"], f"1 class folder(s) with no .jpeg/.jpg/.png images: "
                                                      f"{no_images / 'train' / 'a'}"),
        ([f"ckpt_path={tmp_path / 'train.log'}"], f"{tmp_path / 'train.log'} is not a checkpoint: it is not the zip "
                                                  f"archive torch.save writes (it begins with text)"),
        ([f"ckpt_path={tmp_path / 'empty.ckpt'}"], f"{tmp_path / 'empty.ckpt'} is not a checkpoint: it is empty"),
    ]
    for args, message in cases:
        code, out = finish(start(tmp_path, digits_cache, *TINY, "logger=wandb", *args))
        assert code == 2 and message in out and "Traceback" not in out and "zipfile" not in out, (args, out[-2000:])
    # the same checks, run in this process (python -m trainer's own, before Hydra starts: seconds saved a case)
    from trainer.__main__ import check_before_start

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVNET_CACHE", str(digits_cache))
    cases = [
        ([f"ckpt_path={tmp_path / 'tensor.ckpt'}"], f"{tmp_path / 'tensor.ckpt'} is not a checkpoint written by this "
                                                   f"trainer: it holds a Tensor"),
        ([f"ckpt_path={tmp_path / 'folder.ckpt'}"], f"{tmp_path / 'folder.ckpt'} is a folder, not a checkpoint file"),
        (["data=imagenet", f"data.root={looping}"], f"{looping / 'train' / 'again'} is a symbolic link to "
                                                    f"{looping / 'train'}, a folder that holds it: a loop"),
        (["data=imagenet", f"data.root={named}"], repr(str(named / "train" / "0" / "two\nlines.png")) +
         ": its name holds a line break"),
        (["data=imagenet", f"data.root={two}"], f"data.root={two}: {two} has 2 class folders but the model is "
                                                 f"configured for data.num_classes=1000; set data.num_classes=2"),
        ([f"data.root={looping}"], f"data.root={looping} holds a data set in ImageNet's layout (train/, val/), but "
                                   f"the data set is the embedded digits"),  # data=imagenet was meant
        ([f"data.root={tmp_path / 'nowhere'}"], f"data.root={tmp_path / 'nowhere'} does not exist, but the data set "
                                                f"is the embedded digits"),
    ]
    for args, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            check_before_start([*TINY, "logger=wandb", *args])
        said = capsys.readouterr().err
        assert stop.value.code == 2 and said.startswith("error: ") and message in said, (args, said)
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("wandb"))  # no run folder, no W&B run
    assert not (tmp_path / "nowhere").exists()  # the digits were not written there

    # a checkpoint with one byte changed inside its pickle: the run, evaluate and export name it in one line
    flipped = tmp_path / "flipped.ckpt"
    torch.save({"state_dict": {"net.w": torch.ones(2)}, "hyper_parameters": {"model_name": "lenet5"}}, flipped)
    data = bytearray(flipped.read_bytes())
    at = data.index(b"hyper_parameters")
    data[at + 3] = 0xFF  # inside the key's UTF-8: unpickling fails
    flipped.write_bytes(bytes(data))
    said = f"{flipped} is not a readable checkpoint (cut short, or damaged): UnicodeDecodeError"
    code, out = finish(start(tmp_path, digits_cache, *TINY, f"ckpt_path={flipped}"))
    assert code == 2 and said in out and "Traceback" not in out, out[-2000:]
    for command in (["trainer.evaluate", f"ckpt_path={flipped}", "model=lenet5"],
                    ["trainer.export", str(flipped), "--format", "torchvision", "--out", str(tmp_path / "x.pth")]):
        done = run_cli(*command, cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "x.pth").exists()  # evaluate made no folder

    from data_pipelines import write_digits  # an empty folder given as the digits' root is written into

    digits = tmp_path / "digits-here"
    digits.mkdir()
    assert write_digits(digits) == digits and len(list((digits / "train").rglob("*.png"))) > 1000


def test_a_data_problem_met_before_the_first_step_leaves_nothing_the_run_made(tmp_path, digits_cache):
    """Every image of a data set random bytes named .JPEG: the layout is right, so the run starts; its first batch
    cannot be decoded. It says which file, and removes the run folder and W&B run it had made (the report would
    list a failed run with nothing in it); the data set is untouched."""
    data = tmp_path / "data"
    rng = random.Random(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            (data / split / label).mkdir(parents=True)
            for i in range(4):
                (data / split / label / f"{i}.JPEG").write_bytes(bytes(rng.randrange(256) for _ in range(3000)))
    before = sorted(str(p) for p in data.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    code, out = finish(start(work, digits_cache, "data=imagenet", f"data.root={data}", "data.num_classes=2",
                             "data.image_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                             "schedule=constant", "logger=wandb"))
    assert code == 1 and "Traceback" not in out, out[-3000:]
    assert re.search(rf"^error: cannot read or decode {data}/(train|val)/[ab]/\d\.JPEG; ", out, re.M), out[-3000:]
    assert re.search(r"^nothing was trained; the run folder outputs/lenet5/\S+ it had made was removed$", out, re.M)
    assert list(work.iterdir()) == [] and sorted(str(p) for p in data.rglob("*")) == before


def test_an_export_into_a_folder_it_cannot_write_is_one_line(tmp_path):
    import torch

    from models import create_model

    net = create_model("lenet5", num_classes=10, in_channels=1)
    ckpt = tmp_path / "lenet5.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"model_name": "lenet5", "num_classes": 10, "in_channels": 1, "input_size": 32}},
               ckpt)
    ro = tmp_path / "ro"
    mount_tmpfs(ro, 1 << 20, readonly=True)
    try:
        for fmt, out in (("torchvision", ro / "sub" / "lenet5.pth"),):  # (ONNX writes through the same function)
            done = run_cli("trainer.export", str(ckpt), "--format", fmt, "--out", str(out), cwd=tmp_path, timeout=300)
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
            assert done.stderr.strip() == f"error: cannot write into {out.parent}: Read-only file system; give --out " \
                                          f"in a folder you can write to"
    finally:
        unmount(ro)


# 12. An ONNX export is one file that works wherever it is copied -----------------------------------------------

def test_an_onnx_export_is_one_self_contained_file_with_the_users_file_mode(tmp_path):
    import shutil

    import numpy as np
    import onnx
    import onnxruntime
    import torch

    from models import create_model
    from trainer.export import export_onnx

    net = create_model("lenet5", num_classes=10, in_channels=1).eval()
    out = tmp_path / "made" / "net.onnx"
    export_onnx(net, {"in_channels": 1, "input_size": 32}, out)
    assert [p.name for p in out.parent.iterdir()] == ["net.onnx"]  # nothing hidden beside it
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    model = onnx.load(str(out), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(out, alone / "net.onnx")
    session = onnxruntime.InferenceSession(str(alone / "net.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        expected = net(images).numpy()
    got = session.run(["logits"], {"images": images.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
