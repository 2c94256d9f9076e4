"""A run with the modern recipe's options on (warm-up, label smoothing, MixUp and CutMix, exempt biases) resumes
exactly, and its warmed-up cosine re-plans. End to end: a ``slow`` file (tests/conftest.py)."""

import shutil

from helpers import make_cfg, run_cli
from trainer.run.checkpoints import load_checkpoint
from trainer.run.module import ClassifierModule
from trainer.train import train


def test_a_run_with_the_modern_options_resumes_exactly_and_its_warmed_up_cosine_re_plans(tmp_path, digits_cache):
    """EMA, warm-up, label smoothing, MixUp and CutMix and the exempt biases on: stopped by max_steps inside the
    warm-up, resumed, the run ends with the weights (and their average) of one never stopped; extended with
    schedule.replan from there, the cosine after the warm-up (not the warm-up) takes the new horizon."""
    common = ["ema.decay=0.9", "ema.every_n_steps=2", "ema.adjust=false",
              "schedule.warmup_epochs=2", "model.label_smoothing=0.1", "model.mixup_alpha=0.2",
              "model.cutmix_alpha=1.0", "logger=none", "optim.bias_weight_decay=0.0", "trainer.limit_train_batches=5",
              "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]
    whole = train(make_cfg(tmp_path / "whole", digits_cache, *common, "trainer.max_epochs=3"))
    first = train(make_cfg(tmp_path / "parts", digits_cache, *common, "trainer.max_epochs=3", "trainer.max_steps=7"))
    assert (whole["global_step"], first["global_step"]) == (15, 7)  # 5 steps an epoch; 7: in epoch 2, warming up
    shutil.copy(first["last_ckpt"], tmp_path / "step7.ckpt")
    resumed = train(make_cfg(tmp_path / "parts", digits_cache, *common, "trainer.max_epochs=3",
                             f"ckpt_path={first['last_ckpt']}"))
    a, b = load_checkpoint(whole["last_ckpt"]), load_checkpoint(resumed["last_ckpt"])
    assert resumed["global_step"] == 15
    assert max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"]) <= 1e-6
    assert a["lr_schedulers"] == b["lr_schedulers"] and b["lr_schedulers"][0]["_schedulers"][1]["T_max"] == 1
    assert max((a["ema_state_dict"][k] - b["ema_state_dict"][k]).abs().max().item() for k in a["state_dict"]) <= 1e-6
    assert a["ema_averaging_state"] == b["ema_averaging_state"]  # the same updates, the warm-up's reset included
    biases = [n for n, _ in ClassifierModule("lenet5", 10, 32, 1).named_parameters() if n.endswith(".bias")]
    assert [len(g["params"]) for g in b["optimizer_states"][0]["param_groups"]][1] == len(biases) == 5

    longer = train(make_cfg(tmp_path / "longer", digits_cache, *common, "trainer.max_epochs=5", "schedule.replan=true",
                            f"ckpt_path={tmp_path / 'step7.ckpt'}"))
    state = load_checkpoint(longer["last_ckpt"])["lr_schedulers"][0]
    assert longer["global_step"] == 25 and state["_milestones"] == [2]
    assert state["_schedulers"][1]["T_max"] == 3 and state["_schedulers"][0]["total_iters"] == 2  # 5 - 2; as it was


def test_a_ddp_run_averages_the_weights_in_every_process_alike(tmp_path, digits_cache):
    """Two processes over gloo with EMA: both validate the average (its errors computed over both), and the
    checkpoint holds it."""
    result = run_cli("trainer", "strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "debug=tiny",
                     "model.input_size=32", "ema.decay=0.9", "ema.every_n_steps=1", "ema.adjust=false",
                     "eval_weights=ema", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "runs on: 2 process(es)" in result.stdout + result.stderr
    (last,) = tmp_path.glob("outputs/lenet5/*/checkpoints/last.ckpt")
    ckpt = load_checkpoint(last)
    assert int(ckpt["ema_averaging_state"]["n_averaged"]) == 5  # debug=tiny: 5 steps of 16 images a process
    history = ckpt["callbacks"]["RunRecord"]["val_history"]
    assert history[-1]["val_ema/top1_err"] >= 0 and history[-1]["val/images"] == 64


def test_torchvisions_v2_recipe_trains_on_the_digits_at_a_small_size_with_a_quiet_console(tmp_path, digits_cache):
    """experiment=resnet50_tv2 as the user types it, made small (64 px, crops of 48, 4 images x 2 batches a step, one
    warm-up epoch): every option of the modern recipe runs (repeated augmentation, TrivialAugment, erasing,
    MixUp/CutMix, label smoothing, EMA, the exempt norms, accumulation), the EMA is the run's result, torchvision's
    rows come first, and the console has no warning (DALI's TrivialAugment suite raises DALI's own deprecations at
    every epoch: trainer/run/console.py drops them)."""
    result = run_cli("trainer", "experiment=resnet50_tv2", "data=digits", "model.input_size=64",
                     "data.train_image_size=48", "data.batch_size=4", "trainer.accumulate_grad_batches=2",
                     "schedule.warmup_epochs=1", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "logger=none",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)},
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "effective batch (4 x 2 batches) 8 instead of 1024: lr scaled linearly to 0.00390625" in console
    assert "recipe: experiment=resnet50_tv2: 1 warm-up epochs, then CosineAnnealingLR, 2 epochs" in console
    assert "EMA of the weights, decay 0.99744 every 32 step(s)" in console  # 1 - 2e-5 x 8 a step x 32 / 2 epochs
    assert "epoch 2/2: val top-1 error" in console and "EMA top-1" in console
    table = console[console.index("this run and the papers"):]
    assert table.index("torchvision V2") < table.index("torchvision V1") < table.index("He et al. 2015")
    assert "19.14" in table and "23.87" in table and "22.85" in table
    assert not [line for line in console.splitlines() if line.startswith("warning:")], console[-3000:]
    (last,) = tmp_path.glob("outputs/resnet50/*/checkpoints/last.ckpt")
    ckpt = load_checkpoint(last)
    assert ckpt["global_step"] == 2 and "ema_state_dict" in ckpt
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 2e-5]  # the norms' scales and shifts exempt
