"""Each setting's own rule: ``RULES`` maps every numeric (and a few named) settings of the composed config to what
it allows; ``check_rules`` applies them. A setting that only copies another (``trainer.devices: ${strategy.devices}``)
is checked where the value was set, under that name."""

import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from data_pipelines.protocols import AUTO_AUGMENTS, EVAL_PROTOCOLS


class ConfigValueError(ValueError):
    """A setting whose value is outside what it allows (the message names the key, the value and the rule)."""


@dataclass(frozen=True)
class Rule:
    allows: Callable[[Any], bool]
    text: str       # what is allowed, for the message
    invalid: Any    # a value the rule refuses (the tests try it)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: int, *, or_auto=False, or_none=False, or_values=()) -> Rule:
    extra = (["auto"] if or_auto else []) + (["null"] if or_none else []) + [str(v) for v in or_values]
    return Rule(lambda v: (_int(v) and v >= low) or (or_auto and v == "auto") or (or_none and v is None)
                or (v in or_values and _int(v)),
                f"an integer >= {low}" + "".join(f", or {e}" for e in extra), low - 5)


def between(low: float, high: float, *, low_open=False, high_open=False) -> Rule:
    def allows(v):
        return _number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(allows, text, high + 1)


def positive() -> Rule:
    return Rule(lambda v: _number(v) and v > 0, "a number > 0", -1)


def non_negative() -> Rule:
    return Rule(lambda v: _number(v) and v >= 0, "a number >= 0", -1)


def batches_limit(minimum: int) -> Rule:
    """Lightning's limit_*_batches / val_check_interval: a count of batches, or a fraction of the epoch."""
    return Rule(lambda v: v is None or (_int(v) and v >= minimum) or (isinstance(v, float) and 0 < v <= 1),
                f"null, an integer >= {minimum} (batches) or a fraction in (0, 1] of the epoch", -2)


def size_range() -> Rule:
    return Rule(lambda v: v is None or (isinstance(v, (list, tuple)) and len(v) == 2
                                        and all(_int(x) and x > 0 for x in v) and v[0] <= v[1]),
                "null, or two integers [low, high], 0 < low <= high", [480, 256])


def one_of(values: tuple, text: str | None = None) -> Rule:
    return Rule(lambda v: v in values and not isinstance(v, bool), text or f"one of {', '.join(map(str, values))}",
                "bogus")


# Lightning 2.6's precisions (lightning_fabric/plugins/precision/precision.py: _PRECISION_INPUT; a test keeps this
# list equal to it) and this tool's ``auto`` (trainer/parallel/fast_path.py): written out so that the check needs
# no torch
PRECISIONS = ("auto", "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16")

RULES: dict[str, Rule] = {
    "data.batch_size": at_least(1),
    "data.num_classes": at_least(2),
    "data.num_workers": at_least(1, or_auto=True),
    "cpu_threads": at_least(1, or_auto=True),  # DALI threads: it always has one (not DataLoader's 0)
    "data.image_size": at_least(8),
    "data.train_image_size": at_least(8, or_none=True),
    "data.resize_size": at_least(1, or_none=True),
    "data.scale_range": size_range(),
    "data.random_erase": between(0, 1),
    "data.repeated_augment": at_least(1),
    "data.hw_decoder_load": Rule(lambda v: v is None or (_number(v) and 0 <= v <= 1), "null (DALI's default), or "
                                "a number in [0, 1]", 2),
    "model.input_size": at_least(8),
    "model.in_channels": Rule(lambda v: v in (1, 3) and _int(v), "1 (grey) or 3 (RGB)", 2),
    "model.dropout": between(0, 1, high_open=True),
    "model.label_smoothing": between(0, 1, high_open=True),
    "model.mixup_alpha": non_negative(),
    "model.cutmix_alpha": non_negative(),
    "optim.lr": positive(),
    "optim.momentum": between(0, 1, high_open=True),
    "optim.weight_decay": non_negative(),
    "optim.norm_weight_decay": Rule(lambda v: v is None or (_number(v) and v >= 0), "null, or a number >= 0", -1),
    "optim.bias_weight_decay": Rule(lambda v: v is None or (_number(v) and v >= 0), "null, or a number >= 0", -1),
    "optim.batch_size_for_lr": at_least(1, or_none=True),
    "optim.mu": positive(),
    "optim.samples": at_least(1),
    "optim.curvature": Rule(lambda v: v in ("per_connection", "gauss_newton"), "per_connection (the paper's "
                            "estimate) or gauss_newton (the exact diagonal)", "exact"),
    "model.map_j": Rule(lambda v: v is None or (_number(v) and v > 0), "null, or a number > 0", 0),
    "schedule.scheduler.values": Rule(lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and
                                      all(_number(x) and x > 0 for x in v), "a list of numbers > 0", [0.1, -1]),
    "schedule.scheduler.until": Rule(lambda v: isinstance(v, (list, tuple)) and all(_int(x) and x >= 1 for x in v)
                                     and list(v) == sorted(v), "a rising list of integers >= 1 (epochs)", [5, 2]),
    "schedule.scheduler.scale": positive(),
    "schedule.scheduler.step_size": at_least(1),
    "schedule.scheduler.gamma": positive(),  # > 1 grows the LR (a warm-up): unusual, not wrong
    "schedule.scheduler.factor": between(0, 1, low_open=True, high_open=True),
    "schedule.scheduler.patience": at_least(0),
    "schedule.scheduler.threshold": non_negative(),
    "schedule.scheduler.T_max": at_least(1),
    "ema.decay": Rule(lambda v: v is None or (_number(v) and 0 < v < 1), "null, or a number in (0, 1)", 1),
    "ema.every_n_steps": at_least(1),
    "eval_weights": one_of(("live", "ema")),
    "schedule.warmup_epochs": at_least(0),
    "schedule.warmup_factor": between(0, 1, low_open=True),
    "schedule.restart_lr": Rule(lambda v: v is None or (_number(v) and v > 0), "null, or a number > 0", -1),
    "trainer.devices": at_least(1, or_auto=True),
    "trainer.num_nodes": at_least(1),
    "trainer.max_epochs": at_least(1, or_values=(-1,)),
    "trainer.max_steps": at_least(1, or_values=(-1,)),
    "trainer.accumulate_grad_batches": at_least(1),
    "trainer.log_every_n_steps": at_least(1),
    "trainer.check_val_every_n_epoch": at_least(1),
    "trainer.num_sanity_val_steps": at_least(0, or_values=(-1,)),
    "trainer.limit_train_batches": batches_limit(1),
    "trainer.limit_val_batches": batches_limit(0),
    "trainer.val_check_interval": batches_limit(1),
    "strategy.devices": at_least(1, or_auto=True),
    "strategy.num_nodes": at_least(1),
    "strategy.lightning.timeout.minutes": positive(),
    "checkpoint_every_n_steps": at_least(1, or_none=True),
    "progress_every_s": Rule(lambda v: v is None or (_number(v) and v > 0), "null, or a number of seconds > 0", 0),
    "seed": Rule(lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)", -1),
    "trainer.precision": one_of(PRECISIONS, "auto (bf16-mixed on a GPU that has it, 32-true on a CPU), 32-true, "
                                            "16-mixed, bf16-mixed, 16-true, bf16-true, 64-true, transformer-engine, "
                                            "transformer-engine-float16, or Lightning's short forms 32, 16, bf16, 64"),
    "data.eval_protocol": one_of(EVAL_PROTOCOLS),
    "data.auto_augment": Rule(lambda v: v is None or v in AUTO_AUGMENTS, f"null, or {', '.join(AUTO_AUGMENTS)}", "ta"),
}
_ABSENT = object()


def check_rules(cfg: DictConfig) -> None:
    """Raises ``ConfigValueError`` for the first setting of ``cfg`` that its rule refuses."""
    for key, rule in RULES.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
        if OmegaConf.is_config(node) and leaf in node and OmegaConf.is_interpolation(node, leaf):
            continue  # a copy of another setting (trainer.devices: ${strategy.devices}): that one is checked
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
        except Exception:  # an interpolation that only resolves inside a run (hydra:...): not a user value
            continue
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.allows(value):
            shown = "null" if value is None else value
            raise ConfigValueError(f"{key}={shown} is not allowed: {rule.text}")
