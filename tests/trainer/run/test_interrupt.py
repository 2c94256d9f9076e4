"""The stop path of ``run/interrupt.py``: a signal in set-up, during a checkpoint write, pressed twice or three
times; the NaN guard's checkpoints and its advice (a new rate on resume). Signal moments are chosen, not timed:
in-process by a callback, for ``python -m trainer`` by ``signal_at.py`` (the signal sent as a function returns)."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from helpers import callback_in_runs, make_cfg
from trainer.run.checkpoints import load_checkpoint

SIGNAL_AT = Path(__file__).with_name("signal_at.py")


def signal_at(cwd: Path, cache: Path, module: str, function: str, signame: str, *overrides: str):
    return subprocess.run([sys.executable, str(SIGNAL_AT), module, function, signame,
                           "trainer.enable_progress_bar=false", *overrides], cwd=cwd,
                          env={**os.environ, "CONVNET_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)


def tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder``, with a link's target (the logs the console appends to left out)."""
    return {str(p.relative_to(folder)): str(p.readlink()) if p.is_symlink() else "" for p in folder.rglob("*")
            if p.name not in ("console.log", "run.log")}


def test_a_signal_during_set_up_stops_in_one_line_and_leaves_nothing_behind(tmp_path, digits_cache):
    # just after the run folder was claimed (Ctrl-C), and just after W&B started (SIGTERM): nothing trained
    for module, function, signame, status, name in [
            ("trainer.run.run_folder", "claim_run_folder", "SIGINT", 130, "Ctrl-C (SIGINT)"),
            ("wandb", "init", "SIGTERM", 143, "SIGTERM")]:
        here = tmp_path / signame
        here.mkdir()
        result = signal_at(here, digits_cache, module, function, signame)
        assert result.returncode == status, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert re.fullmatch(rf"stopped by {re.escape(name)} during set-up, before training began: nothing was trained; "
                            rf"the run folder outputs/lenet5/\S+ it had made was removed", last), last
        time.sleep(1)  # W&B's own process, if it wrote late, would have by now
        assert list(here.iterdir()) == []  # not even outputs/

    # a resume in its own folder, stopped while W&B starts: the folder holds what it held, links included
    first = subprocess.run([sys.executable, "-m", "trainer", "trainer.enable_progress_bar=false", "trainer.max_steps=3",
                            "schedule=constant"], cwd=tmp_path, env={**os.environ, "CONVNET_CACHE": str(digits_cache)},
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (ckpt,) = tmp_path.glob("outputs/lenet5/*/checkpoints/last.ckpt")
    run = ckpt.parent.parent
    before = tree(run)
    result = signal_at(tmp_path, digits_cache, "wandb", "init", "SIGTERM", "schedule=constant", "trainer.max_steps=6",
                       f"ckpt_path={ckpt}")
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"nothing was trained; the run folder {run} holds what it held before (the same command resumes it)")
    time.sleep(1)
    assert tree(run) == before


def test_a_signal_during_a_checkpoint_write_lets_it_finish_then_stops_at_the_next_step(tmp_path, digits_cache):
    import trainer.train as train_module
    from trainer.run.interrupt import RunInterrupted

    class TermWhileSaving(pl.Callback):  # inside trainer.save_checkpoint: the every-5-steps write of step 10
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            if trainer.global_step == 10:
                os.kill(os.getpid(), signal.SIGTERM)

    with callback_in_runs(TermWhileSaving()), \
            pytest.raises(RunInterrupted, match=r"stopped by SIGTERM at global step 11 \(in epoch 1 of 1, after 11 of "
                                                r"its 45 batches\)") as stop:
        train_module.train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=1", "logger=none",
                                    "checkpoint_every_n_steps=5"))
    assert stop.value.exit_status == 143
    folder = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == 11
    assert not list(folder.glob(".*.tmp-*"))  # the write of step 10 finished: nothing half-written


def started_training(job: subprocess.Popen, cwd: Path) -> None:
    deadline = time.monotonic() + 300
    while not list(cwd.glob("outputs/lenet5/*/checkpoints/last.ckpt")):  # an epoch in: training, not set-up
        assert time.monotonic() < deadline and job.poll() is None, "the run wrote no checkpoint"
        time.sleep(0.2)


def test_ctrl_c_pressed_twice_stops_once_quietly_and_three_times_quits_at_once(tmp_path, digits_cache):
    env = {**os.environ, "CONVNET_CACHE": str(digits_cache)}
    command = [sys.executable, "-m", "trainer", "trainer.enable_progress_bar=false"]  # W&B's closing: seconds
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started_training(job, tmp_path)
    time.sleep(1)  # into epoch 2
    job.send_signal(signal.SIGINT)
    time.sleep(0.5)  # as people press it (two signals at once arrive as one: they are not queued)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert err.count("already stopping") <= 1  # said once if it came while stopping; nothing if after
    stopped = re.search(r"stopped by Ctrl-C \(SIGINT\) at global step (\d+) .*; checkpoint: (\S+)\n", err)
    assert stopped and load_checkpoint(stopped.group(2))["global_step"] == int(stopped.group(1))

    job = subprocess.Popen([*command, f"ckpt_path={stopped.group(2)}"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (line := job.stdout.readline()).startswith("epoch "):  # training again (a line per epoch)
        assert line or job.poll() is None, job.stderr.read()[-3000:]
    for _ in range(3):
        job.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130 and "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    load_checkpoint(stopped.group(2))  # whole, whatever the third press cut short


def test_the_second_signal_while_stopping_is_said_once_and_a_third_ctrl_c_quits_at_once(tmp_path):
    # the handler itself, with the moments fixed: the process is stopping (training stage) when they come
    code = ("import os, signal, time\n"
            "from trainer.run import interrupt\n"
            "interrupt.install()\n"
            "interrupt._stage[0] = 'training'  # as trainer.fit runs\n"
            "for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGINT, signal.SIGINT):\n"
            "    os.kill(os.getpid(), signum)\n"
            "    time.sleep(0.2)\n"
            "    print('noted', len(interrupt.received), flush=True)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.splitlines() == ["noted 1", "noted 2", "noted 3"]  # the fourth signal, third Ctrl-C: gone
    assert result.returncode == 130
    assert result.stderr.count("already stopping: writing the checkpoint of the next step (Ctrl-C twice more quits at "
                               "once, without it)") == 1  # SIGTERM, then one Ctrl-C: two more make three
    assert "quit at once: the last checkpoint written before this stop is kept" in result.stderr


def test_the_nan_guard_keeps_finite_weights_and_its_advice_a_lower_rate_is_the_rate_resumed_at(tmp_path, digits_cache,
                                                                                              caplog):
    from trainer.run.callbacks import NonFiniteLossError
    from trainer.train import train

    common = ["trainer.max_epochs=1", "schedule=constant", "logger=none", "checkpoint_every_n_steps=1"]
    with pytest.raises(NonFiniteLossError) as stop:  # a checkpoint every step: one after the update that broke them
        train(make_cfg(tmp_path / "a", digits_cache, *common, "optim.lr=1e6"))
    said = re.match(r"the weights became NaN/inf in the update of global step (\d+) \(epoch 1\); training stopped\. "
                    r"The last good checkpoint is kept: (\S+) \(checkpoints are written with finite weights only\); "
                    r"resume from it at a lower rate: python -m trainer .*"
                    r"ckpt_path=\2 optim.lr=<lower rate>$", str(stop.value))
    assert said, str(stop.value)
    kept = load_checkpoint(said.group(2))
    assert kept["global_step"] == int(said.group(1)) - 1
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values() if t.is_floating_point())

    caplog.set_level(logging.INFO)
    resumed = train(make_cfg(tmp_path / "a", digits_cache, *common, "optim.lr=0.001", "trainer.max_steps=20",
                             f"ckpt_path={said.group(2)}"))
    assert "learning rate 0.001 given, the checkpoint's run had 1e+06: training goes on at the new rate" in caplog.text
    assert "optimizer: SGD, lr 0.001 (resumed: the rate of its next step)" in caplog.text
    after = load_checkpoint(resumed["last_ckpt"])
    assert after["global_step"] == 20 and after["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.001)


def test_sigterm_to_one_process_of_a_ddp_run_in_validation_stops_both_at_one_step_and_resumes_exactly(tmp_path,
                                                                                                       digits_cache):
    # rank 0 alone gets SIGTERM as its epoch-1 validation starts (as `kill <pid>` sends it); both processes agree
    # at the validation's first batch, save the training state and stop; resumed, the validation runs again
    common = ["strategy=ddp", "trainer.devices=2", "logger=none", "trainer.num_sanity_val_steps=0",
              "trainer.max_epochs=2", "trainer.limit_train_batches=12", "trainer.limit_val_batches=4"]
    env = {**os.environ, "CONVNET_CACHE": str(digits_cache)}
    whole = subprocess.run([sys.executable, "-m", "trainer", *common, "trainer.enable_progress_bar=false",
                            "hydra.run.dir=whole"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    stopped = signal_at(tmp_path, digits_cache, "pytorch_lightning.loops.evaluation_loop",
                        "_EvaluationLoop.on_run_start", "SIGTERM", *common, "hydra.run.dir=stopped")
    assert stopped.returncode == 143 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert (f"stopped by SIGTERM at global step 12 (in the validation of epoch 1 of 2, after its 12 batches of "
            f"training; resumed, the validation runs again); checkpoint: {ckpt}") in stopped.stderr
    resumed = subprocess.run([sys.executable, "-m", "trainer", *common, "trainer.enable_progress_bar=false",
                              f"ckpt_path={ckpt}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {ckpt} in epoch 1, after its training (its validation runs again)" in resumed.stdout
    epochs = lambda out: [line.split(", lr")[0] for line in out.splitlines() if line.startswith("epoch ")]  # noqa: E731
    assert epochs(resumed.stdout) == [line.split(", train loss")[0] if line.startswith("epoch 1/") else line
                                      for line in epochs(whole.stdout)]  # the same validation results, both epochs
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(ckpt)["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0


def test_a_ddp_run_signalled_in_an_epochs_last_step_stops_at_its_end_in_every_process(tmp_path, digits_cache):
    # SIGTERM to rank 0 after step 1's check: the processes agree at step 2, the epoch's last, and stop at its end.
    # There, rank 0 prints the epoch's line: its values logged with sync_dist are reductions over the processes,
    # which rank 0 once made alone while rank 1 was already saving (a collective of another kind): rank 1 died on
    # the mismatch (under the split, whose save gathers the towers, both hung: a Slurm preemption at an epoch's end)
    result = signal_at(tmp_path, digits_cache, "trainer.run.callbacks.stop_on_signal",
                       "StopOnSignal.on_train_batch_end", "SIGTERM", "strategy=ddp", "trainer.devices=2", "logger=none",
                       "trainer.max_epochs=2",
                       "trainer.limit_train_batches=2", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
                       "trainer.log_every_n_steps=1", "hydra.run.dir=run")
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert (f"stopped by SIGTERM at global step 2 (at the end of epoch 1 of 2); checkpoint: {ckpt}"
            in result.stderr.splitlines())
    assert "epoch 1/2: train loss" in result.stdout and load_checkpoint(ckpt)["global_step"] == 2


def test_a_run_stopped_before_its_first_validation_says_it_has_no_best_checkpoint_once(tmp_path, digits_cache, caplog):
    from trainer.train import train

    caplog.set_level(logging.INFO)
    result = train(make_cfg(tmp_path, digits_cache, "trainer.max_steps=3", "logger=none"))
    assert result["global_step"] == 3 and result["best_ckpt"] == ""
    assert caplog.text.count("no best checkpoint: the run stopped before its first validation (best.ckpt follows "
                             "val/top1_err); last.ckpt holds the run") == 1
    assert "could not find the monitored key" not in caplog.text  # Lightning's hint at a bug in the user's code
