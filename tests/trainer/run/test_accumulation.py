"""Gradient accumulation (``trainer.accumulate_grad_batches``): k batches train as one batch of their sum, the lr's
linear scaling and the EMA's adjustment count the effective batch, and a run stopped by a signal inside a window
stops at the window's step and resumes exactly."""

import os
import re
import signal

import pytest
import pytorch_lightning as pl

from helpers import callback_in_runs, make_cfg, run_cli
from trainer.config_check import ConfigValueError, check_values
from trainer.config_check.combinations import check_combinations
from trainer.run.checkpoints import load_checkpoint
from trainer.run.interrupt import RunInterrupted
from trainer.run.resume import configured_lr, effective_batch
from trainer.train import ema_decay, train

QUIET = ["logger=none", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1"]


def largest_difference(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_the_lr_scaling_the_ema_and_lenet5s_rate_count_the_effective_batch(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path, "data.batch_size=8", "trainer.accumulate_grad_batches=4",
                   "optim.batch_size_for_lr=16", "optim.lr=0.1", "ema.decay=0.99998", "ema.every_n_steps=32",
                   "ema.adjust=true", "trainer.max_epochs=600")
    assert effective_batch(cfg) == 32
    assert configured_lr(cfg) == pytest.approx(0.2)  # 0.1 x 32 / 16
    assert ema_decay(cfg) == pytest.approx(1 - 2e-5 * 32 * 32 / 600)  # torchvision's rule, at the images of a step
    passes = make_cfg(tmp_path, tmp_path, "experiment=lenet5_1998", "data=mnist", "trainer.accumulate_grad_batches=3")
    assert passes.schedule.scheduler.scale == 12  # the paper's rate is per pattern: times the 4 x 3 of a step
    with pytest.raises(ConfigValueError, match=r"trainer.val_check_interval=0.5 validates inside an epoch, which "
                                               r"trainer.accumulate_grad_batches=2 cuts into windows"):
        check_combinations(make_cfg(tmp_path, tmp_path, "trainer.accumulate_grad_batches=2",
                                    "trainer.val_check_interval=0.5"))
    with pytest.raises(ConfigValueError, match=r"trainer.accumulate_grad_batches=0 is not allowed"):
        check_values(make_cfg(tmp_path, tmp_path, "trainer.accumulate_grad_batches=0"))


def test_two_accumulated_batches_train_as_one_batch_of_both(tmp_path, digits_cache, capsys):
    """LeNet-5 (no batch norm, no dropout) at 8 images x 2 batches a step and at 16 x 1, on the same images in the
    same order: the same weights after 4 steps, the same lr, and the same epoch's training loss on the console
    (Lightning hands back each batch's loss divided by the batches of a step: multiplied back)."""
    common = [*QUIET, "optim.batch_size_for_lr=16", "trainer.max_epochs=2", "schedule=constant",
              "data.preset=mnist"]  # centred, no random placement: whose draws depend on the batch
    accumulated = train(make_cfg(tmp_path / "acc", digits_cache, *common, "data.batch_size=8",
                                 "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=4"))
    losses = [re.findall(r"train loss ([\d.]+)", capsys.readouterr().out)]
    whole = train(make_cfg(tmp_path / "whole", digits_cache, *common, "data.batch_size=16",
                           "trainer.limit_train_batches=2"))
    losses.append(re.findall(r"train loss ([\d.]+)", capsys.readouterr().out))
    assert accumulated["global_step"] == whole["global_step"] == 4
    a, b = load_checkpoint(accumulated["last_ckpt"]), load_checkpoint(whole["last_ckpt"])
    assert largest_difference(a["state_dict"], b["state_dict"]) <= 1e-5
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]
    # the mean of 4 batches of 8 against that of 2 of 16, on the same weights at each step (printed to 4 digits)
    assert len(losses[0]) == len(losses[1]) == 2
    assert [float(x) for x in losses[0]] == pytest.approx([float(x) for x in losses[1]], rel=2e-3)


def test_a_signal_inside_a_window_stops_at_its_step_and_the_run_resumes_exactly(tmp_path, digits_cache):
    """2 batches a step, 5 batches an epoch (steps of 2, 2 and 1), EMA, MixUp/CutMix and warm-up on: Ctrl-C at the
    first batch of a window stops after its second (no checkpoint of half a step's gradients); resumed, the run
    ends with the weights and the average of one never stopped."""
    common = [*QUIET, "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=5", "trainer.max_epochs=3",
              "ema.decay=0.9", "ema.every_n_steps=1", "ema.adjust=false", "model.mixup_alpha=0.2",
              "model.cutmix_alpha=1.0", "schedule.warmup_epochs=1"]
    whole = train(make_cfg(tmp_path / "whole", digits_cache, *common))
    assert whole["global_step"] == 9

    class CtrlCAtBatch(pl.Callback):
        """Ctrl-C once, at the end of the run's 8th batch: epoch 2's 3rd, the first of its second window."""

        def __init__(self) -> None:
            self.batches = 0

        def on_train_batch_end(self, trainer, *args) -> None:
            self.batches += 1
            if self.batches == 8:
                os.kill(os.getpid(), signal.SIGINT)

    with callback_in_runs(CtrlCAtBatch()), \
            pytest.raises(RunInterrupted, match=r"at global step 5 \(in epoch 2 of 3, after 4 of its 5 batches\)"):
        train(make_cfg(tmp_path / "parts", digits_cache, *common))
    last = tmp_path / "parts" / "run" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 5
    resumed = train(make_cfg(tmp_path / "parts", digits_cache, *common, f"ckpt_path={last}"))
    assert resumed["global_step"] == 9
    a, b = load_checkpoint(whole["last_ckpt"]), load_checkpoint(resumed["last_ckpt"])
    assert largest_difference(a["state_dict"], b["state_dict"]) <= 1e-6
    assert largest_difference(a["ema_state_dict"], b["ema_state_dict"]) <= 1e-6
    assert a["ema_averaging_state"] == b["ema_averaging_state"]  # one update a step: 9, none twice
    assert int(b["ema_averaging_state"]["n_averaged"]) == 9 - 3  # the warm-up epoch's 3 steps were copies


def test_ddp_replicas_accumulating_train_as_one_process_on_all_their_images(tmp_path, digits_cache):
    """Two processes over gloo at 16 images (8 each) x 2 batches a step against one process at 32 x 1: replica r
    reads images r, r+2, ... of the epoch's order, so a step's two windows hold the single process's 32 images
    and the same weights come out only if the gradients were averaged over the replicas at each step (DDP's static
    graph is off for this: with its no_sync() it crashes, or stops averaging; pytorch#143580, #187732)."""
    common = ["logger=none", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
              "data.preset=mnist", "optim.batch_size_for_lr=32", "schedule=constant"]
    result = run_cli("trainer", *common, "strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                     "data.batch_size=16", "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=6",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)},
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = tmp_path.glob("outputs/lenet5/*/checkpoints/last.ckpt")
    replicas = load_checkpoint(last)
    single = train(make_cfg(tmp_path / "single", digits_cache, *common, "data.batch_size=32",
                            "trainer.limit_train_batches=3"))
    assert replicas["global_step"] == single["global_step"] == 3
    assert largest_difference(replicas["state_dict"], load_checkpoint(single["last_ckpt"])["state_dict"]) <= 1e-5


def test_no_checkpoint_is_written_inside_a_window(tmp_path, digits_cache, monkeypatch):
    """Checkpoints every 2 steps at 2 batches a step, the run stopped by max_steps and resumed: every checkpoint is
    written at a batch after which the optimizer stepped. (Lightning's every-N test took a resumed run's first
    batch, still at the checkpoint's global step, for a new step, and wrote last.ckpt without that batch's
    gradient: the kill loop's resumes from it ended 1.9e-4 away from the uninterrupted run.)"""
    from trainer.run.steps import optimizer_steps_on_this_batch

    saves = []
    real_save = pl.Trainer.save_checkpoint

    def recording(self, *args, **kwargs):
        if self.training:
            saves.append((self.global_step, optimizer_steps_on_this_batch(self)))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", recording)
    common = [*QUIET, "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=5", "trainer.max_epochs=2",
              "checkpoint_every_n_steps=2"]
    first = train(make_cfg(tmp_path / "run", digits_cache, *common, "trainer.max_steps=4"))
    assert first["global_step"] == 4
    resumed = train(make_cfg(tmp_path / "run", digits_cache, *common, f"ckpt_path={first['last_ckpt']}"))
    assert resumed["global_step"] == 6
    assert saves and all(stepped for _, stepped in saves), saves
    assert {step for step, _ in saves} == {2, 3, 4, 6}  # every 2 steps, max_steps' stop and the epochs' ends
