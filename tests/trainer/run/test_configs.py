"""Every config group option composes and instantiates; unknown names list the valid choices."""

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF, make_cfg, run_cli
from models import input_shape, list_models
from trainer.__main__ import default_data_overrides
from trainer.parallel.fast_path import resolve
from trainer.run.module import ClassifierModule
from trainer.train import build_logger, build_optimizer, build_trainer


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_model_has_a_config_and_matches_the_registry(tmp_path, digits_cache):
    assert options("model") == sorted(list_models())
    for name in list_models():
        cfg = make_cfg(tmp_path, digits_cache, f"model={name}")
        assert (cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size) == input_shape(name)
        own = OmegaConf.load(CONF / "model" / f"{name}.yaml")  # the shape is the catalogue's alone
        assert own.model_name == name and not {"input_size", "in_channels", "_target_"} & set(own)
    assert make_cfg(tmp_path, digits_cache, "model=resnet18", "model.input_size=64").model.input_size == 64


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "resnet18"])
def test_model_configs_instantiate(tmp_path, digits_cache, name):
    cfg = resolve(make_cfg(tmp_path, digits_cache, f"model={name}"), cuda=False)  # as train() does
    module = instantiate(cfg.model, optimizer=build_optimizer(cfg))
    assert isinstance(module, ClassifierModule) and module.hparams.model_name == name
    assert module(module.example_input_array).shape == (2, 10)


@pytest.mark.parametrize("schedule", options("schedule"))
def test_optim_and_schedule_instantiate(tmp_path, digits_cache, schedule):
    cfg = resolve(make_cfg(tmp_path, digits_cache, f"schedule={schedule}"), cuda=False)
    optimizer = build_optimizer(cfg)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    if cfg.schedule.scheduler is None:
        assert schedule == "constant"
    else:
        assert isinstance(instantiate(cfg.schedule.scheduler)(optimizer=optimizer),
                          torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau)


@pytest.mark.parametrize("data", options("data"))
def test_data_configs_instantiate(tmp_path, digits_cache, data):
    extra = ["data.root=/some/where"] if data == "imagenet" else []
    cfg = make_cfg(tmp_path, digits_cache, f"data={data}", *extra)
    dm = instantiate(cfg.data)
    assert isinstance(dm, pl.LightningDataModule) and dm.name == data
    assert dm.num_classes == {"digits": 10, "imagenet": 1000, "mnist": 10}[data]


@pytest.mark.parametrize("logger, expected", [("wandb", "WandbLogger"), ("csv", "CSVLogger"), ("none", None)])
def test_logger_configs(tmp_path, digits_cache, logger, expected):
    cfg = make_cfg(tmp_path, digits_cache, f"logger={logger}")
    built = build_logger(cfg, tmp_path)
    assert (type(built).__name__ if built else None) == expected
    if expected == "WandbLogger":
        assert built._offline is True  # no W&B login on this machine: kept offline
        assert built._wandb_init["name"] == "lenet5-single-digits"


def test_trainer_and_strategy_instantiate(tmp_path, digits_cache):
    cfg = resolve(make_cfg(tmp_path, digits_cache), cuda=False)
    trainer = build_trainer(cfg, tmp_path, logger=False)
    assert trainer.max_epochs == 30 and trainer.num_devices == 1 and trainer.checkpoint_callback is not None


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_to_the_paper_recipes(tmp_path, digits_cache, experiment):
    cfg = make_cfg(tmp_path, digits_cache, f"experiment={experiment}")
    assert cfg.experiment_name == experiment
    first_line = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()[1]
    assert first_line.startswith(f"# python -m trainer experiment={experiment}")
    recipe = {"alexnet_2012": ("alexnet", 0.01, 5e-4, 128, 90), "zfnet_2013": ("zfnet", 0.01, 5e-4, 128, 70),
              "vgg16_2014": ("vgg16", 0.01, 5e-4, 256, 74), "resnet50_2015": ("resnet50", 0.1, 1e-4, 256, 120),
              "resnet152_2015": ("resnet152", 0.1, 1e-4, 256, 120), "lenet5_sgd": ("lenet5", 0.001, 5e-4, 32, 30),
              "lenet5_1998": ("lenet5", 0.0005, 0.0, 4, 20), "resnet50_tv1": ("resnet50", 0.1, 1e-4, 256, 90),
              "resnet50_tv2": ("resnet50", 0.5, 2e-5, 1024, 600)}
    assert (cfg.model.model_name, cfg.optim.lr, cfg.optim.weight_decay, cfg.data.batch_size,
            cfg.trainer.max_epochs) == recipe[experiment]
    if experiment == "lenet5_1998":  # the paper's SDLM with its own curvature estimate, at mu = 1 (the yaml says why)
        assert (cfg.optim.curvature, cfg.optim.mu, cfg.model.loss, cfg.schedule.scheduler.scale) == \
            ("per_connection", 1.0, "map", 4)
    if experiment == "resnet50_tv1":  # torchvision's train.py defaults: StepLR every 30 epochs by 0.1
        assert (cfg.schedule.scheduler.step_size, cfg.schedule.scheduler.gamma, cfg.optim.batch_size_for_lr) == \
            (30, 0.1, 256)
    if experiment == "resnet50_tv2":
        assert_torchvision_v2_recipe(cfg)


def assert_torchvision_v2_recipe(cfg) -> None:
    """The values of torchvision's ResNet-50 V2 command (conf/experiment/resnet50_tv2.yaml names each flag)."""
    from trainer.train import ema_decay

    assert (cfg.optim.momentum, cfg.optim.batch_size_for_lr, cfg.optim.norm_weight_decay, cfg.optim.bias_weight_decay) \
        == (0.9, 1024, 0.0, None)
    assert cfg.schedule.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert (cfg.schedule.warmup_epochs, cfg.schedule.warmup_factor, cfg.schedule.scheduler.T_max) == (5, 0.01, 595)
    assert (cfg.model.label_smoothing, cfg.model.mixup_alpha, cfg.model.cutmix_alpha) == (0.1, 0.2, 1.0)
    assert (cfg.ema.decay, cfg.ema.every_n_steps, cfg.ema.adjust, cfg.eval_weights) == (0.99998, 32, True, "ema")
    assert ema_decay(cfg) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)  # 0.99891, train.py's adjustment
    assert (cfg.data.auto_augment, cfg.data.random_erase, cfg.data.repeated_augment) == ("trivial_augment", 0.1, 4)
    assert (cfg.data.train_image_size, cfg.data.image_size) == (176, 224)


def test_debug_tiny_cuts_any_recipe_to_a_few_batches_without_wandb(tmp_path, digits_cache):
    """debug=tiny: over an experiment too (it comes last in the defaults), one epoch of 5 batches and 2 of
    validation, no logger; and such a run trains those 5 steps."""
    from trainer.train import train

    cfg = make_cfg(tmp_path, digits_cache, "experiment=alexnet_2012", "debug=tiny")
    assert (cfg.trainer.max_epochs, cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches) == (1, 5, 2)
    assert cfg.optim.momentum == 0.9 and "_target_" not in cfg.logger  # the recipe's, without W&B
    result = train(make_cfg(tmp_path, digits_cache, "debug=tiny"))
    assert result["global_step"] == 5 and result["epochs"] == 1 and result["wandb_dir"] is None
    assert result["val/images"] == 2 * 32  # two batches of the digits' 32


def test_default_data_follows_imagenet_root():
    assert default_data_overrides(["model=alexnet"], {"IMAGENET_ROOT": "/x"}) == ["model=alexnet", "data=imagenet"]
    assert default_data_overrides(["model=alexnet"], {}) == ["model=alexnet"]
    assert default_data_overrides(["data=digits"], {"IMAGENET_ROOT": "/x"}) == ["data=digits"]


def test_multirun_with_a_multi_process_strategy_is_refused(tmp_path):
    result = run_cli("trainer", "-m", "strategy=ddp", "trainer.devices=2", "optim.lr=0.01,0.02", cwd=tmp_path,
                     timeout=120)
    assert result.returncode == 2
    assert "error: Hydra multirun (-m) cannot be combined with strategy=ddp" in result.stderr
    assert "python -m trainer -m hydra/launcher=slurm strategy=ddp" in result.stderr  # the way that works
    assert not (tmp_path / "outputs").exists()  # refused before any training


@pytest.mark.parametrize("batch, lr", [(128, 0.01), (256, 0.02), (64, 0.005)])
def test_lr_scales_linearly_with_the_global_batch(tmp_path, digits_cache, batch, lr):
    cfg = resolve(make_cfg(tmp_path, digits_cache, "experiment=alexnet_2012", f"data.batch_size={batch}"), cuda=False)
    optimizer = build_optimizer(cfg)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.defaults["lr"] == pytest.approx(lr)


def test_ddp_strategy_config(tmp_path, digits_cache):
    import datetime

    cfg = make_cfg(tmp_path, digits_cache, "strategy=ddp", "trainer.devices=2", "strategy.sync_batchnorm=true")
    strategy = instantiate(cfg.strategy.lightning)
    assert type(strategy).__name__ == "DDPStrategy" and strategy._timeout == datetime.timedelta(minutes=10)
    assert cfg.trainer.sync_batchnorm is True


def test_two_gpu_split_strategy_config(tmp_path, digits_cache):
    import datetime

    from trainer.parallel.split_strategy import TwoGPUSplitStrategy, plan_processes

    cfg = make_cfg(tmp_path, digits_cache, "model=alexnet", "strategy=two_gpu_split")
    strategy = instantiate(cfg.strategy.lightning)
    assert isinstance(strategy, TwoGPUSplitStrategy) and strategy._timeout == datetime.timedelta(minutes=10)
    assert cfg.trainer.devices == 2 and cfg.trainer.num_nodes == 1  # one pair, as in the paper
    cfg.trainer.accelerator = "auto"
    assert plan_processes(cfg) == ({"accelerator": "cpu"} if torch.cuda.device_count() < 2 else {})


@pytest.mark.parametrize("experiment, preset, scales", [
    ("alexnet_2012", "alexnet", None), ("zfnet_2013", "alexnet", None),
    ("vgg16_2014", "resnet", [256, 512]), ("resnet50_2015", "resnet", [256, 480]),
    ("resnet152_2015", "resnet", [256, 480]), ("resnet50_tv1", "inception", None),
    ("resnet50_tv2", "inception", None)])
def test_experiments_set_their_papers_imagenet_augmentation(tmp_path, digits_cache, experiment, preset, scales):
    cfg = make_cfg(tmp_path, digits_cache, f"experiment={experiment}", "data=imagenet", "data.root=/x")
    assert (cfg.data.preset, OmegaConf.to_container(cfg.data).get("scale_range")) == (preset, scales)
    assert cfg.data.resize_size == (232 if experiment == "resnet50_tv2" else 256)  # validation's shorter side
    # on the digits (no ImageNet) the config records the augmentation that runs, and no other under another name
    digits = make_cfg(tmp_path, digits_cache, f"experiment={experiment}")
    assert (digits.data.preset, digits.data.scale_range, "augment" in digits) == ("digits", None, False)


def test_a_resnet_preset_without_its_scale_range_is_refused_before_the_run(tmp_path, digits_cache):
    from trainer.config_check import ConfigValueError, check_values

    cfg = make_cfg(tmp_path, digits_cache, "data=imagenet", "data.root=/x", "data.preset=resnet")
    with pytest.raises(ConfigValueError, match=r"data.preset=resnet draws the shorter side from data.scale_range"):
        check_values(cfg)
    check_values(make_cfg(tmp_path, digits_cache, "data=imagenet", "data.root=/x", "augment=resnet"))


def test_help_says_what_the_tool_is_lists_its_commands_and_imports_no_deep_learning_library(tmp_path):
    """`python -m trainer --help`: what the tool is, its commands, the config groups (not Hydra's generic page
    and the whole config); from the configs alone: torch, Lightning, torchvision, DALI and W&B (seconds of
    imports) are loaded only by a run."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "trainer", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "powered by Hydra" not in result.stdout
    for text in ("convnet-classics: train the classic ConvNets", "python -m trainer.evaluate",
                 "python -m trainer.report",
                 "python -m trainer.export", "python -m trainer.bench", "python -m data_pipelines.prepare",
                 "python -m data_pipelines.verify", "make gpu-kit; make gpu-check", "model: alexnet, alexnet_onetower"):
        assert text in result.stdout, text
    assert "optim:\n  lr:" not in result.stdout  # not the whole config
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert imported & {"torch", "pytorch_lightning", "torchvision", "nvidia.dali", "wandb"} == set()
    assert "IMAGENET_ROOT is not set" not in result.stderr


def test_a_misspelt_key_gets_the_nearest_real_one_not_a_hint_to_add_it(tmp_path):
    from helpers import run_cli

    result = run_cli("trainer", "trainer.max_epoch=1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("error: trainer.max_epoch is not a setting of this config; did you mean trainer.max_epochs?"
            in result.stderr) and not (tmp_path / "outputs").exists()


def test_a_misspelt_option_gets_the_nearest_ones_in_one_line(tmp_path, monkeypatch, capsys):
    from trainer.__main__ import check_before_start

    monkeypatch.chdir(tmp_path)
    for override, said in [
            ("model=resnt18", "model=resnt18 is not an option of model; did you mean model=resnet18 or "
                              "model=resnet152? "
                              "(the options: alexnet, alexnet_onetower, lenet5, resnet101, resnet152, resnet18, "
                              "resnet34, resnet50, vgg16, zfnet)"),
            ("strategy=dpp", "strategy=dpp is not an option of strategy; did you mean strategy=ddp? (the options: ddp, "
                             "single, two_gpu_split)"),
            ("data=imagenet21k", "data=imagenet21k is not an option of data; did you mean data=imagenet? (the options: "
                                 "digits, imagenet, mnist)"),
            ("logger=nosuch", "logger=nosuch is not an option of logger (the options: csv, none, wandb)")]:
        with pytest.raises(SystemExit) as stop:
            check_before_start([override])
        assert stop.value.code == 2 and capsys.readouterr().err == f"error: {said}\n"
    assert not (tmp_path / "outputs").exists()


def test_a_value_hydra_cannot_read_unquoted_is_one_line_with_the_quoting(tmp_path, monkeypatch, capsys):
    from trainer.__main__ import check_before_start

    monkeypatch.chdir(tmp_path)
    for overrides, said in [
            (["data=imagenet", "data.root=/data/my", "images"], "'images' is not a setting (key=value): the shell cut "
             "the value of data.root=/data/my at a space; quote the whole setting: 'data.root=/data/my images'"),
            (["data=imagenet", "data.root=/data/donnée"], "data.root=/data/donnée cannot be read as a setting: Hydra "
             "reads a value with accents, brackets or spaces only quoted; quote the value inside the setting, e.g. "
             "\"data.root='/data/donnée'\"")]:
        with pytest.raises(SystemExit) as stop:
            check_before_start(overrides)
        assert stop.value.code == 2 and capsys.readouterr().err == f"error: {said}\n"
    # quoted as said, both reach the data check (the folder does not exist here)
    for quoted in (["data.root=/data/my images"], ["data.root='/data/donnée'"]):
        with pytest.raises(SystemExit):
            check_before_start(["data=imagenet", *quoted])
        assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()
