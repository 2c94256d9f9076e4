"""The modern recipe's options against their definitions: label smoothing's loss, the weight-decay groups (and a
resume that would regroup them), the warm-up's learning rate by epoch; each refused where it cannot apply. (The
exact resume with them on: tests/trainer/run/test_recipe_resume.py; safetensors: tests/trainer/test_export.py.)"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from data_pipelines.sharding import PAD_LABEL
from helpers import make_cfg
from trainer.config_check import ConfigValueError, check_values
from trainer.optim.param_groups import parameter_groups
from trainer.parallel.fast_path import resolve
from trainer.run.checkpoints import CheckpointError
from trainer.run.module import ClassifierModule
from trainer.run.resume import check_parameter_groups, check_warmup
from trainer.train import build_module


def test_label_smoothing_is_the_mixture_of_the_label_and_the_uniform_target_over_real_samples():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 10), torch.tensor([3, 0, PAD_LABEL, 9, 3])
    module = ClassifierModule("lenet5", num_classes=10, in_channels=1, input_size=32, label_smoothing=0.1)
    logp = logits.log_softmax(-1)
    real = labels != PAD_LABEL
    by_hand = [0.9 * -logp[i, labels[i]] + 0.1 * -logp[i].mean() for i in range(5) if real[i]]
    assert torch.allclose(module.training_loss(logits, labels), torch.stack(by_hand).mean(), atol=1e-6)
    plain = ClassifierModule("lenet5", num_classes=10, in_channels=1, input_size=32)
    assert torch.allclose(plain.training_loss(logits, labels), F.cross_entropy(logits[real], labels[real]))
    # validation's loss stays the plain cross-entropy of the scores, whatever the training target
    assert torch.allclose(module._loss(logp, labels), F.cross_entropy(logits[real], labels[real]), atol=1e-6)


def test_label_smoothing_is_refused_with_the_map_criterion(tmp_path, digits_cache):
    cfg = make_cfg(tmp_path, digits_cache, "model.loss=map", "model.label_smoothing=0.1")
    with pytest.raises(ConfigValueError, match=r"model.label_smoothing=0.1 smooths the cross-entropy's target; "
                                               r"model.loss=map has no class probabilities to smooth"):
        check_values(cfg)
    with pytest.raises(ValueError, match="model.loss=map has no class probabilities"):
        ClassifierModule("lenet5", 10, 32, 1, loss="map", map_j=10.0, label_smoothing=0.1)


def test_the_groups_hold_the_norm_layers_and_the_biases_they_name(tmp_path, digits_cache):
    cfg = resolve(make_cfg(tmp_path, digits_cache, "model=resnet18", "optim.weight_decay=1e-4",
                           "optim.norm_weight_decay=0.0", "optim.bias_weight_decay=0.0"), cuda=False)
    module = build_module(cfg)
    decayed, norm, bias = module.configure_optimizers()["optimizer"].param_groups
    names = {id(p): n for n, p in module.named_parameters()}
    assert decayed["weight_decay"] == 1e-4 and norm["weight_decay"] == 0.0 and bias["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in bias["params"]) == ["net.fc.bias"]  # ResNet's convolutions have none
    bn = sorted(n for n, m in module.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert sorted(names[id(p)] for p in norm["params"]) == sorted(f"{m}.{k}" for m in bn for k in ("weight", "bias"))
    assert len(bn) == 20 and all(names[id(p)].endswith("weight") for p in decayed["params"])
    every = [id(p) for g in (decayed, norm, bias) for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in module.parameters()) and len(set(every)) == len(every)


def test_without_exemptions_one_group_holds_every_parameter_in_the_modules_order():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2, 2))
    (group,) = parameter_groups(net)
    assert group == {"params": list(net.parameters())}  # the optimizer state's order of before (old checkpoints)
    decayed, norm = parameter_groups(net, norm_weight_decay=0.0)
    assert norm["params"] == list(net[1].parameters()) and decayed["params"] == [*net[0].parameters(),
                                                                                 *net[2].parameters()]
    lenet = ClassifierModule("lenet5", 10, 32, 1)  # no norm layer: the group is there, empty
    assert [len(g["params"]) for g in parameter_groups(lenet, norm_weight_decay=0.0)][1] == 0


def test_a_step_decays_only_the_parameters_of_the_decayed_group():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    optimizer = torch.optim.SGD(parameter_groups(net, norm_weight_decay=0.0, bias_weight_decay=0.0), lr=1.0,
                                weight_decay=0.5)
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = list(net.parameters())
    assert torch.allclose(after[0], 0.5 * before[0])  # Linear's weight: w - lr * wd * w
    assert all(torch.equal(a, b) for a, b in zip(after[1:], before[1:]))  # its bias, the norm's weight and bias


def test_a_resume_that_would_regroup_the_parameters_is_refused():
    resumed = {"optimizer_states": [{"param_groups": [{"lr": 0.1, "params": [0, 1]}]}]}
    check_parameter_groups(resumed, "last.ckpt", None, None)
    with pytest.raises(CheckpointError, match=r"last.ckpt was trained with its parameters in 1 weight-decay "
                                              r"group\(s\), and this run's settings \(optim.norm_weight_decay=0.0 "
                                              r"optim.bias_weight_decay=null\) make 2"):
        check_parameter_groups(resumed, "last.ckpt", 0.0, None)


def lrs_by_epoch(module, epochs: int) -> list[float]:
    """The rate each epoch trains at, stepping the module's schedule once an epoch as Lightning does."""
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_warmup_rises_linearly_then_the_cosine_falls_to_zero_over_the_epochs_left(tmp_path, digits_cache):
    cfg = make_cfg(tmp_path, digits_cache, "optim.lr=0.5", "trainer.max_epochs=7", "schedule.warmup_epochs=3",
                   "schedule.warmup_factor=0.1")
    assert cfg.schedule.scheduler.T_max == 4  # the epochs after the warm-up (torchvision: epochs - warmup)
    got = lrs_by_epoch(build_module(cfg), 8)
    warmup = [0.5 * (0.1 + 0.9 * e / 3) for e in range(3)]  # LinearLR from 0.1 x lr, reaching lr at epoch 3
    cosine = [0.5 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]  # from lr at epoch 3 to 0 at epoch 7
    assert got == pytest.approx(warmup + cosine, abs=1e-9)
    alone = make_cfg(tmp_path, digits_cache, "optim.lr=0.5", "schedule=constant", "schedule.warmup_epochs=2")
    assert lrs_by_epoch(build_module(alone), 4) == pytest.approx([0.005, 0.2525, 0.5, 0.5])  # then constant


@pytest.mark.parametrize("overrides, message", [
    (["trainer.max_epochs=3", "schedule.warmup_epochs=3"], "schedule.warmup_epochs=3 leaves no epoch of the schedule "
                                                          "after it: trainer.max_epochs=3 must be larger"),
    (["schedule=plateau", "schedule.warmup_epochs=1"], "schedule=plateau steps by a metric"),
    (["schedule.warmup_factor=0"], "schedule.warmup_factor=0 is not allowed"),
])
def test_a_warmup_that_cannot_run_is_refused(tmp_path, digits_cache, overrides, message):
    with pytest.raises(ConfigValueError, match=re.escape(message)):
        check_values(make_cfg(tmp_path, digits_cache, *overrides))


def test_a_resume_with_another_warmup_is_refused(tmp_path, digits_cache):
    module = build_module(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=4", "schedule.warmup_epochs=2"))
    state = module.configure_optimizers()["lr_scheduler"]["scheduler"].state_dict()
    resumed = {"lr_schedulers": [state]}
    check_warmup(resumed, "last.ckpt", 2)
    with pytest.raises(CheckpointError, match=r"last.ckpt was trained with schedule.warmup_epochs=2, and this run "
                                              r"has 0"):
        check_warmup(resumed, "last.ckpt", 0)
    plain = build_module(make_cfg(tmp_path, digits_cache)).configure_optimizers()["lr_scheduler"]["scheduler"]
    with pytest.raises(CheckpointError, match="schedule.warmup_epochs=0, and this run has 1"):
        check_warmup({"lr_schedulers": [plain.state_dict()]}, "last.ckpt", 1)
