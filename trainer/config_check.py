"""Every value a user can set, checked in one place before anything starts (no folder, logger or process).

``RULES`` maps each numeric setting of the composed config to what it allows; a setting that only copies
another (``trainer.devices: ${strategy.devices}``) is checked where the value was set, under that name. A bad
value stops the command with ``error: <key>=<value> is not allowed: <what is allowed>`` and exit status 2.
tests/trainer/test_config_check.py finds every numeric key of every composed config and requires a rule for it.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from data_pipelines.protocols import AUTO_AUGMENTS, EVAL_PROTOCOLS
from data_pipelines.sharding import batch_refusal

from . import target_is
from .parallel.layout import replicas, several_under_single, split_refusal
from .run.loss_choice import loss_refusal


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


def check_values(cfg: DictConfig) -> None:
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
    check_layout(cfg)
    if OmegaConf.select(cfg, "data.preset", default=None) == "resnet" and not OmegaConf.select(
            cfg, "data.scale_range", default=None):
        raise ConfigValueError("data.preset=resnet draws the shorter side from data.scale_range, which is not set: "
                               "use augment=resnet (He et al.'s [256, 480]) or augment=vgg ([256, 512]), or set "
                               "data.scale_range=[256,480]")
    refusal = loss_refusal(OmegaConf.select(cfg, "model.loss", default=None),
                           OmegaConf.select(cfg, "model.model_name"),
                           OmegaConf.select(cfg, "model.map_j", default=None),
                           OmegaConf.select(cfg, "model.label_smoothing", default=0.0),
                           bool(OmegaConf.select(cfg, "model.mixup_alpha", default=0.0) or
                                OmegaConf.select(cfg, "model.cutmix_alpha", default=0.0)))
    if refusal:
        raise ConfigValueError(refusal)
    check_warmup(cfg)
    check_ema(cfg)
    if OmegaConf.select(cfg, "data.auto_augment", default=None) and OmegaConf.select(cfg, "data.channels",
                                                                                   default=3) == 1:
        raise ConfigValueError(f"data.auto_augment={cfg.data.auto_augment} works on RGB images, and this model reads "
                               f"grey ones (model.in_channels=1): DALI's suite of colour operations does not take "
                               f"one channel; set data.auto_augment=null")
    if OmegaConf.select(cfg, "schedule.restart_lr", default=None) and not OmegaConf.select(cfg, "ckpt_path",
                                                                                           default=None):
        raise ConfigValueError("schedule.restart_lr restarts a resumed run's schedule: give the checkpoint with "
                               "ckpt_path=...; a new run starts at optim.lr")
    check_named_files_and_rows(cfg)


def check_ema(cfg: DictConfig) -> None:
    """``eval_weights=ema`` needs an average, and the two-GPU split's towers are not averaged (yet)."""
    decay = OmegaConf.select(cfg, "ema.decay", default=None)
    if OmegaConf.select(cfg, "eval_weights", default="live") == "ema" and not decay:
        raise ConfigValueError("eval_weights=ema reports the weights' moving average, but there is none "
                               "(ema.decay=null): set ema.decay (e.g. 0.99998, torchvision's), or eval_weights=live")
    if decay and OmegaConf.select(cfg, "strategy.name", default=None) == "two_gpu_split":
        raise ConfigValueError("ema.decay with strategy=two_gpu_split: each tower would average its half, and the "
                               "checkpoint joins the towers' trained weights only, not their averages (not built "
                               "yet); use strategy=ddp, or ema.decay=null")


def check_warmup(cfg: DictConfig) -> None:
    """A warm-up leaves epochs to the schedule after it, and that schedule steps by epochs, not by a metric."""
    warmup = OmegaConf.select(cfg, "schedule.warmup_epochs", default=0) or 0
    if not warmup:
        return
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=-1)
    if epochs != -1 and warmup >= epochs:
        raise ConfigValueError(f"schedule.warmup_epochs={warmup} leaves no epoch of the schedule after it: "
                               f"trainer.max_epochs={epochs} must be larger")
    from torch.optim.lr_scheduler import ReduceLROnPlateau  # torch only for a run with a warm-up

    if target_is(OmegaConf.select(cfg, "schedule.scheduler", default=None), ReduceLROnPlateau):
        raise ConfigValueError("schedule.warmup_epochs works in front of a schedule that steps by epochs; "
                               "schedule=plateau steps by a metric (torch's SequentialLR cannot chain it): use "
                               "schedule=step or cosine with a warm-up, or schedule.warmup_epochs=0")


def check_named_files_and_rows(cfg: DictConfig) -> None:
    """What a setting names must exist: the paper rows of ``compare_with`` (``trainer/results/papers.yaml``) and
    the file of ``model.weights`` (read later, when the model is built: after the run folder and W&B run)."""
    import difflib
    from pathlib import Path

    from .results.paper_comparison import load_references

    rows = OmegaConf.select(cfg, "compare_with", default=None)
    if rows is not None:
        table = load_references()
        model = OmegaConf.select(cfg, "model.model_name", default=None)
        for row in rows:
            if row not in table:
                near = difflib.get_close_matches(str(row), list(table), n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]}?" if near else ""
                own = [name for name, ref in table.items() if ref.model == model]
                raise ConfigValueError(f"compare_with names {row}, which is not a row of trainer/results/papers.yaml"
                                       f"{hint} (the rows of model={model}: {', '.join(own) or 'none'})")
    weights = OmegaConf.select(cfg, "model.weights", default=None)
    if weights not in (None, "torchvision") and not Path(str(weights)).expanduser().is_file():
        where = Path(str(weights)).expanduser()
        what = "is a folder" if where.is_dir() else "does not exist"
        raise ConfigValueError(f"model.weights={weights} {what}: give a state dict (.pth), one of this project's "
                               f"checkpoints (.ckpt) or torchvision")


def check_layout(cfg: DictConfig) -> None:
    """The run's name and tags say its strategy: ``strategy=single`` is one process on one device, so several
    devices or nodes under it (which Lightning would run as DDP, labelled ``single``) are refused; so are a split
    of another model than AlexNet and an odd number of tower processes per node."""
    strategy = OmegaConf.select(cfg, "strategy.name", default=None)
    devices, nodes = OmegaConf.select(cfg, "trainer.devices"), OmegaConf.select(cfg, "trainer.num_nodes")
    if _int(devices) and _int(nodes) and strategy in ("ddp", "two_gpu_split"):  # the replicas are known now
        batch = OmegaConf.select(cfg, "data.batch_size")
        if _int(batch) and (refusal := batch_refusal(batch, replicas(strategy, devices, nodes))):
            raise ConfigValueError(refusal)
    model = OmegaConf.select(cfg, "model.model_name")
    refusal = several_under_single(strategy, devices, nodes) or split_refusal(strategy, model, devices)
    if refusal:
        raise ConfigValueError(refusal)


def check_data_root(cfg: DictConfig, first_process: bool = True) -> None:
    """A data folder that is not there or not in the expected layout, found before the run folder and the
    W&B run exist (the embedded digits are made on first use, so their folder may be missing or empty).
    The layout (class folders holding images, the same classes in train and val) is listed by the first
    process only, and that listing is the job's one (``layout.list_before_start``): on a network file system
    every process listing ImageNet's 2,000 folders, or one process twice, would cost minutes."""
    from pathlib import Path

    from data_pipelines.layout import DataLayoutError, check_class_count, list_before_start

    if OmegaConf.select(cfg, "data.name", default=None) == "digits":
        check_digits_root(cfg)
        return
    root = OmegaConf.select(cfg, "data.root", default=None)
    if root is None:
        raise ConfigValueError("data.root is not set: set data.root=/path/to/imagenet or the IMAGENET_ROOT "
                               "environment variable (docs/data.md)")
    if not Path(str(root)).expanduser().exists():
        how = OmegaConf.select(cfg, "data.how_to_make", default=None)
        raise ConfigValueError(f"data.root={root} does not exist; " + (
            f"make it with: {how}" if how else "expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> "
                                               "(docs/data.md, \"Getting ImageNet ready\")"))
    if first_process:
        try:
            listing = list_before_start(str(root))
            check_class_count(root, listing.classes, int(cfg.data.num_classes))
        except DataLayoutError as e:
            raise ConfigValueError(f"data.root={root}: {e}") from None


def check_digits_root(cfg: DictConfig) -> None:
    """``data.root=<folder>`` with the embedded digits (``data=digits``, the default without ``IMAGENET_ROOT``):
    almost always ImageNet was meant. The digits' own folder (``paths.cache_dir``/digits, or one the digits were
    written to before) is accepted; anything else is refused before anything is written, with the fix."""
    from pathlib import Path

    root = Path(str(cfg.data.root)).expanduser()
    if root == Path(str(cfg.paths.cache_dir)).expanduser() / "digits" or (root / "convnet-classics.json").is_file():
        return
    if root.is_file():
        what = "is a file"
    elif root.is_dir() and (root / "train").is_dir() and (root / "val").is_dir():
        what = "holds a data set in ImageNet's layout (train/, val/)"
    elif root.exists():
        what = "is a folder that does not hold the digits"
    else:
        what = "does not exist"
    raise ConfigValueError(
        f"data.root={cfg.data.root} {what}, but the data set is the embedded digits (data=digits: no data set was "
        f"named and IMAGENET_ROOT is not set, or data=digits was given), which keep their images in "
        f"{cfg.paths.cache_dir}/digits. For ImageNet or a data set in its layout: data=imagenet data.root="
        f"{cfg.data.root}; for the digits in another place: CONVNET_CACHE=<folder>")
