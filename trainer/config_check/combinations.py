"""The settings checked together: a strategy and its devices, a loss and its options, a warm-up and its schedule,
the weights' average and what reports it, what a setting names (a paper row, a weights file)."""

from omegaconf import DictConfig, OmegaConf

from data_pipelines.sharding import batch_refusal

from .. import target_is
from ..parallel.layout import replicas, several_under_single, split_refusal
from ..run.loss_choice import loss_refusal
from .rules import ConfigValueError, _int


def check_combinations(cfg: DictConfig) -> None:
    """Raises ``ConfigValueError`` for the first combination of settings that cannot run."""
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
    batches = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1
    if batches > 1 and OmegaConf.select(cfg, "trainer.val_check_interval", default=None) is not None:
        # a validation inside a window would keep a best.ckpt without the window's gradients (run/checkpoints.py)
        raise ConfigValueError(f"trainer.val_check_interval={cfg.trainer.val_check_interval} validates inside an "
                               f"epoch, which trainer.accumulate_grad_batches={batches} cuts into windows of "
                               f"{batches} batches a step: set trainer.val_check_interval=null (once an epoch)")
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
    """``eval_weights=ema`` needs an average."""
    decay = OmegaConf.select(cfg, "ema.decay", default=None)
    if OmegaConf.select(cfg, "eval_weights", default="live") == "ema" and not decay:
        raise ConfigValueError("eval_weights=ema reports the weights' moving average, but there is none "
                               "(ema.decay=null): set ema.decay (e.g. 0.99998, torchvision's), or eval_weights=live")


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

    from ..results.paper_comparison import load_references

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
