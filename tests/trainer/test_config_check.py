"""Every value a user can set is checked before anything starts (trainer/config_check/)."""

import pytest
import torch
from omegaconf import OmegaConf

from helpers import CONF, make_cfg, run_cli
from trainer.config_check import RULES, ConfigValueError, check_values


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# every composition a user can pick: each option of each group that brings numeric settings (the split only
# splits AlexNet: another model under it is refused, tested in tests/trainer/parallel/test_two_gpu_split.py)
_PARTNER = {"two_gpu_split": ["model=alexnet"]}
VARIANTS = [[], *([f"experiment={e}"] for e in _options("experiment")),
            *([f"schedule={s}"] for s in _options("schedule")),
            *([f"strategy={s}", *_PARTNER.get(s, [])] for s in _options("strategy")),
            *([f"model={m}"] for m in _options("model")),
            ["data=imagenet", "data.root=/datasets/imagenet"], ["data=mnist"]]


def _numeric_keys(cfg) -> dict[str, list]:
    """Every setting whose value is a number or a list of numbers, or may be (``auto``/null beside numbers)."""
    found = {}

    def walk(node, prefix):
        for key in node:
            path = f"{prefix}{key}"
            if OmegaConf.is_interpolation(node, key):  # a copy of another setting, which is checked where it is set
                continue
            try:
                value = OmegaConf.select(cfg, path)
            except Exception:  # resolves only inside a run (hydra:...)
                continue
            if OmegaConf.is_dict(value):
                walk(value, f"{path}.")
                continue
            if OmegaConf.is_list(value):
                value = OmegaConf.to_container(value)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            numbers = isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value)
            if numeric or numbers:
                found[path] = value

    walk(cfg, "")
    return found


@pytest.fixture(scope="module")
def composed(tmp_path_factory, digits_cache):
    folder = tmp_path_factory.mktemp("cfg")
    return [(variant, make_cfg(folder, digits_cache, *variant)) for variant in VARIANTS]


def test_every_numeric_setting_has_a_rule_and_the_defaults_pass(composed):
    seen = set()
    for variant, cfg in composed:
        check_values(cfg)  # every shipped config is valid
        seen |= set(_numeric_keys(cfg))
    assert sorted(seen - set(RULES)) == []  # a new numeric setting needs a rule in trainer/config_check/rules.py
    assert len(seen) >= 25  # the walk found the settings (26 today)


def test_each_setting_with_a_bad_value_is_named_with_what_is_allowed(composed):
    checked = set()
    for key, rule in RULES.items():
        cfg = next((c for _, c in composed if OmegaConf.select(c, key, default="absent") != "absent"), None)
        if cfg is None:  # only in configs made in code (none today)
            continue
        cfg = cfg.copy()
        OmegaConf.update(cfg, key, rule.invalid, force_add=True)  # as the override key=value sets it
        with pytest.raises(ConfigValueError) as refused:
            check_values(cfg)
        shown = rule.invalid if not isinstance(rule.invalid, list) else f"[{', '.join(map(str, rule.invalid))}]"
        assert str(refused.value) == f"{key}={shown} is not allowed: {rule.text}"
        checked.add(key)
    assert len(checked) == len(RULES)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "error: data.batch_size=0 is not allowed: an integer >= 1"),
    ("optim.lr=-1", "error: optim.lr=-1 is not allowed: a number > 0"),
    ("trainer.max_epochs=0", "error: trainer.max_epochs=0 is not allowed: an integer >= 1, or -1"),
    ("trainer.devices=2", "error: trainer.devices=2 is not allowed with strategy=single, which runs one process on "
                          "one device: for several, use strategy=ddp trainer.devices=2"),  # else DDP named `single`
])
def test_a_bad_value_stops_the_command_before_anything_is_written(tmp_path, digits_cache, override, message):
    folder = tmp_path / "work"
    folder.mkdir()
    result = run_cli("trainer", override, cwd=folder, env={"CONVNET_CACHE": str(digits_cache)}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message and "Traceback" not in result.stderr
    assert list(folder.iterdir()) == []  # no run folder, no W&B run


def test_the_precisions_allowed_are_lightnings_and_auto():
    from typing import get_args

    from lightning_fabric.plugins.precision.precision import _PRECISION_INPUT

    def flat(kind):
        return [v for arg in get_args(kind) for v in (flat(arg) if get_args(arg) else [arg])]

    from trainer.config_check import PRECISIONS

    assert sorted(map(str, PRECISIONS)) == sorted(map(str, ["auto", *flat(_PRECISION_INPUT)]))


@pytest.mark.parametrize("override, said", [
    ("trainer.precision=bogus", "trainer.precision=bogus is not allowed: auto (bf16-mixed on a GPU that has it, "
                                "32-true on a CPU), 32-true, "),
    ("data.eval_protocol=tencorp", "data.eval_protocol=tencorp is not allowed: one of center, tencrop, dense, "
                                   "multiscale"),
    ("compare_with=[lenet5_1998_mnst]", "compare_with names lenet5_1998_mnst, which is not a row of "
                                        "trainer/results/papers.yaml; did you mean lenet5_1998_mnist? (the rows of "
                                        "model=lenet5: lenet5_1998_mnist, lenet5_1998_mnist_distorted)"),
    ("model.weights=nosuch.pth", "model.weights=nosuch.pth does not exist: give a state dict (.pth), one of this "
                                 "project's checkpoints (.ckpt) or torchvision"),
    ("model.weights=.", "model.weights=. is a folder: "),
    *([("trainer.accelerator=gpu", "trainer.accelerator=gpu asks for a GPU, but this machine has none")]
      if not torch.cuda.is_available() else [])])
def test_what_a_run_would_find_wrong_only_after_its_start_is_refused_before(tmp_path, monkeypatch, capsys, override,
                                                                          said):
    """Values Lightning, the data pipeline, the paper comparison or the model would refuse once the run folder and
    the W&B run exist: refused in one line with nothing written."""
    from trainer.__main__ import check_before_start

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as stop:
        check_before_start([override])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"error: {said}") and err.count("\n") == 1, err
    assert list(work.iterdir()) == []
