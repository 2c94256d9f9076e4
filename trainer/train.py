"""``train(cfg)``: build data, model, loggers and callbacks from a composed config and fit."""

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_only

from data_pipelines.sharding import data_parallel_rank_and_size

from .cli import user_errors
from .config_check import check_values
from .parallel import cpu_threads
from .parallel.devices import check_gpus_usable
from .parallel.fast_path import NoProfiler, resolve, runs_on_cuda
from .parallel.lost_peer import RequeueOnLostPeer
from .parallel.peers import lost_peer, lost_peer_error, requeue_plan
from .parallel.slurm_preemption import SlurmPreemption
from .results import tracking
from .results.paper_comparison import coverage, print_comparison, references_for, summary_fields
from .results.summary import print_summary, run_title
from .run import interrupt
from .run.callbacks import (
    EMAWeights,
    NonFiniteLossError,
    NonFiniteLossGuard,
    ProgressBar,
    ProgressLines,
    RunRecord,
    StepMetrics,
    StopOnSignal,
)
from .run.callbacks.ema import adjusted_decay
from .run.callbacks.stop_on_signal import take_over_from_lightning
from .run.checkpoints import (
    AtomicCheckpointIO,
    LastCheckpoint,
    RunCheckpoint,
    check_compatible,
    remove_stale_temporaries,
)
from .run.console import quiet_known_noise
from .run.resume import batches_per_step, check_data_order, configured_lr, effective_batch, position, resume_plan
from .run.run_folder import remove_unstarted
from .run.steps import epoch_number

log = logging.getLogger(__name__)


def build_logger(cfg: DictConfig, output_dir: Path, wandb_run_id: str | None = None):
    """The configured Lightning logger, or ``False`` for ``logger=none``; W&B's continues ``wandb_run_id`` (a
    resumed or requeued run keeps its id: one W&B run)."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    if tracking.uses_wandb(cfg.logger):
        return tracking.wandb_logger(cfg, output_dir, wandb_run_id)
    return instantiate(cfg.logger, save_dir=str(output_dir))


# optim's settings that are not the optimizer's arguments: the module groups the parameters by them
DECAY_BY_KIND = ("norm_weight_decay", "bias_weight_decay")


def build_optimizer(cfg: DictConfig):
    """The partial optimizer, with the linear LR scaling rule applied when the global batch was changed."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    for key in DECAY_BY_KIND:
        optim.pop(key, None)
    reference = optim.pop("batch_size_for_lr", None)
    if reference:
        optim["lr"] = configured_lr(cfg)
        if (images := effective_batch(cfg)) != reference:
            batches = batches_per_step(cfg)
            what = "global batch" if batches == 1 else f"effective batch ({cfg.data.batch_size} x {batches} batches)"
            log.info("%s %d instead of %d: lr scaled linearly to %g", what, images, reference, optim["lr"])
    return instantiate(optim)


def build_module(cfg: DictConfig, replan: dict | None = None, scheduled: bool = True) -> pl.LightningModule:
    """``cfg.model``'s module with the run's optimizer, weight-decay groups, schedule and warm-up (``scheduled``; the
    benchmark times steps without them), and a resume's change of its schedule (``run/resume.py``'s
    ``resume_plan``)."""
    schedule = cfg.schedule if scheduled else {}
    return instantiate(cfg.model, optimizer=build_optimizer(cfg), **{k: cfg.optim.get(k) for k in DECAY_BY_KIND},
                       scheduler=instantiate(schedule.scheduler) if schedule.get("scheduler") else None,
                       scheduler_interval=schedule.get("interval", "epoch"),
                       scheduler_monitor=schedule.get("monitor", "val/top1_err"), schedule_replan=replan or {},
                       warmup_epochs=schedule.get("warmup_epochs") or 0,
                       warmup_factor=schedule.get("warmup_factor", 0.01), seed=cfg.seed,
                       _convert_="all")  # the plan as plain dicts and lists: it goes into the checkpoint's states


def build_trainer(cfg: DictConfig, output_dir: Path, logger, **overrides) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer``, with ``overrides`` (e.g. ``accelerator``) on top."""
    folder = output_dir / "checkpoints"
    # Two callbacks: Lightning's save_last only rewrites last.ckpt when the best one changes.
    best = RunCheckpoint(dirpath=folder, filename="best", monitor=f"{reported(cfg)}/top1_err", mode="min", save_top_k=1,
                         auto_insert_metric_name=False, enable_version_counter=False)
    last = LastCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False)
    step_metrics = StepMetrics()
    callbacks = [RunRecord(logger, int(cfg.data.batch_size), title=run_title(cfg), recipe=recipe(cfg)), best, last,
                 step_metrics, NonFiniteLossGuard(last_ckpt=folder / "last.ckpt"),
                 StopOnSignal(last_ckpt=folder / "last.ckpt"), RequeueOnLostPeer(output_dir)]
    if ema := ema_callback(cfg):  # first: a step's update is in the average before any callback saves that step
        callbacks.insert(0, ema)   # (StopOnSignal's checkpoint, a preemption's; Lightning runs ModelCheckpoint last)
    if cfg.get("checkpoint_every_n_steps"):  # mid-epoch too: a crash in a long epoch loses at most N steps
        callbacks.append(LastCheckpoint(dirpath=folder, filename="last", save_top_k=1, enable_version_counter=False,
                                        every_n_train_steps=cfg.checkpoint_every_n_steps))
    if cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty():  # on a terminal: the bar
        callbacks.append(ProgressBar(step_metrics))
    else:  # off one (a Slurm log, nohup), where a bar draws nothing but its last frame: plain lines
        overrides = {**overrides, "enable_progress_bar": False}
        if cfg.get("progress_every_s"):
            callbacks.append(ProgressLines(step_metrics, float(cfg.progress_every_s)))
    strategy = cfg.strategy.lightning
    if OmegaConf.is_dict(strategy):
        # DDP's static graph and its no_sync() (Lightning's accumulated batches) crash on the first backward
        # (pytorch#143580), and where they do not, stop averaging the gradients (pytorch#187732): dynamic then
        dynamic = batches_per_step(cfg) > 1 and "static_graph" in strategy
        strategy = instantiate(strategy, **({"static_graph": False} if dynamic else {}))
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # USR2: an hpc checkpoint and `scontrol requeue` (ours, not Lightning's handler)
        plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks.append(SlurmPreemption(signal.SIGUSR2))
    if cfg.trainer.get("profiler") is None:
        overrides = {"profiler": NoProfiler(), **overrides}
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, strategy=strategy,
                          default_root_dir=str(output_dir), plugins=plugins, **overrides)
    take_over_from_lightning(trainer)  # one stop path on a signal: StopOnSignal's
    return trainer


def ema_decay(cfg: DictConfig) -> float | None:
    """The decay of the weights' moving average the config asks for (``ema.decay``, adjusted as torchvision does
    when ``ema.adjust``), or None for none."""
    ema = cfg.get("ema") or {}
    if not ema.get("decay"):
        return None
    decay, epochs = float(ema.decay), int(cfg.trainer.max_epochs)
    if ema.get("adjust") and epochs > 0:
        decay = adjusted_decay(decay, effective_batch(cfg), int(ema.every_n_steps), epochs)
    return decay


def ema_callback(cfg: DictConfig) -> EMAWeights | None:
    """The weights' moving average the config asks for, or None."""
    decay = ema_decay(cfg)
    return EMAWeights(decay, int(cfg.ema.every_n_steps), int(cfg.schedule.get("warmup_epochs") or 0)) \
        if decay is not None else None


def reported(cfg: DictConfig) -> str:
    """Whose validation is the run's result: ``val`` (the trained weights) or ``val_ema`` (``eval_weights=ema``)."""
    return "val_ema" if cfg.get("eval_weights") == "ema" else "val"


def recipe(cfg: DictConfig) -> str:
    """The recipe in words: the experiment, the schedule and its length, the seed."""
    scheduler = cfg.schedule.get("scheduler")
    schedule = scheduler._target_.rsplit(".", 1)[-1] if scheduler else "constant lr"
    if cfg.schedule.get("warmup_epochs"):
        schedule = f"{cfg.schedule.warmup_epochs} warm-up epochs, then {schedule}"
    length = (f"{cfg.trainer.max_epochs} epochs" if cfg.trainer.max_epochs and cfg.trainer.max_epochs > 0 else "") + (
        f", at most {cfg.trainer.max_steps} steps" if cfg.trainer.get("max_steps", -1) > 0 else "")
    if (decay := ema_decay(cfg)) is not None:
        length += f"; EMA of the weights, decay {decay:.6g} every {cfg.ema.every_n_steps} step(s)"
    preset = cfg.data.get("preset")
    return (f"experiment={cfg.experiment_name}: {schedule}, {length}; augmentation {preset}; seed {cfg.seed}"
            if preset else f"experiment={cfg.experiment_name}: {schedule}, {length}; seed {cfg.seed}")


def strategy_plan(cfg: DictConfig) -> dict:
    """The strategy's own plan before any process starts (``strategy.plan``: a function of the config that
    returns Trainer overrides, such as the split's CPU processes on a machine without its GPUs), or none. What
    a strategy cannot run at all is refused earlier, by ``config_check/``."""
    return get_method(cfg.strategy.plan)(cfg) if cfg.strategy.get("plan") else {}


def checkpoint_to_resume(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path`` when given; else the newest checkpoint already in this run's folder, if any.

    A run folder holds checkpoints before training only when the run is continuing: a requeued Slurm
    job (the folder is keyed on the job id), whose last epoch-end, every-N-steps or preemption
    (``hpc_ckpt_*.ckpt``) checkpoint is picked up here.
    """
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    found = [*output_dir.glob("hpc_ckpt_*.ckpt"), *(output_dir / "checkpoints").glob("last.ckpt")]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Trains one run as the config says.

    Returns:
        ``val/top1_err``, ``val/top5_err``, ``val/images`` (the images the last validation scored, of
        ``val/set_images``), ``epochs``, ``global_step``, ``wall_s`` and the paths of the
        checkpoints and the W&B run.
    """
    start = time.perf_counter()
    # The same seed in every process: the model starts identical everywhere. The data loaders seed
    # their workers per data-parallel rank themselves (data_pipelines.datamodule), so Lightning's
    # per-process worker seeding (workers=True) stays off: the two towers of a split pair must
    # augment identically.
    quiet_known_noise()
    interrupt.back_to_setup()  # the next point of an in-process sweep: a signal stops it before it trains
    check_values(cfg)  # again: a sweep's point, or a config made in code
    pl.seed_everything(cfg.seed, workers=False)
    # checked before anything is built or any process is started
    check_gpus_usable(cfg.trainer.accelerator)
    trainer_overrides = strategy_plan(cfg)
    cfg = resolve(cfg, cuda=runs_on_cuda(cfg, trainer_overrides.get("accelerator")))  # the `auto` speed switches
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        for tmp in remove_stale_temporaries(output_dir / "checkpoints"):
            log.info("removed %s, left by a checkpoint write that was killed", tmp)

    ckpt_path = checkpoint_to_resume(cfg, output_dir)
    resumed = check_compatible(ckpt_path, cfg.model.model_name, cfg.data.num_classes) if ckpt_path else {}
    change = resume_plan(resumed, cfg, ckpt_path) if resumed else {}
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, change)
    if resumed:
        if change.get("scheduler") and rank_zero_only.rank == 0:
            log.info("schedule %s from here: %s", "restarted at lr %g" % change["lr"] if change.get("lr") else
                     "re-planned", {k: v for k, v in change.get("scheduler", {}).items() if v is not None})
        if change.get("lr_scale") and rank_zero_only.rank == 0:
            log.info("learning rate %g given, the checkpoint's run had %g: training goes on at the new rate, its "
                     "schedule scaled by %g", change["lr_given"], change["lr_saved"], change["lr_scale"])
        if rank_zero_only.rank == 0:
            log.info("resuming from %s %s (global step %d)", ckpt_path, position(resumed), resumed["global_step"])
    references = references_for(cfg.model.model_name, cfg.get("compare_with"))  # a typo fails before training

    logger = build_logger(cfg, output_dir, wandb_run_id=resumed.get("wandb_run_id"))
    trainer = build_trainer(cfg, output_dir, logger, **trainer_overrides)
    if resumed:  # the data-parallel replicas are known now
        check_data_order(resumed, ckpt_path, None, data_parallel_rank_and_size(trainer)[1])
    threads = cpu_threads.take(cfg, trainer)  # fewer while other processes keep the CPUs busy, where it may
    next(c for c in trainer.callbacks if isinstance(c, RunRecord)).cpu_threads = threads[:2]
    if logger:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), **tracking.git_state(),
                                **tracking.environment()})
    try:
        with interrupt.noted_signals():  # Ctrl-C / SIGTERM: a checkpoint at the next step (StopOnSignal)
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except interrupt.RunInterrupted as e:  # stopped cleanly, its checkpoint written: not a failed run
        if trainer.is_global_zero:  # where, as the message says it: the report reads it
            tracking.record_stop(logger, str(e).splitlines()[0], epoch_number(trainer))
        raise
    except BaseException as e:
        if not lost_peer(e):
            unstarted = trainer.global_step == resumed.get("global_step", 0) and trainer.world_size == 1 and \
                isinstance(e, user_errors()) and not isinstance(e, NonFiniteLossError)  # e.g. a data set the run
            # cannot read, found as the data module sets up
            part = tracking.run_folder(logger) if unstarted else None
            tracking.finish(logger, exit_code=1)
            if unstarted:  # nothing trained: what this start made goes (the report would list a failed run)
                e.removed = remove_unstarted(str(output_dir), _config_subdir(), Path(part) if part else None)
            raise
        requeued = next(c for c in trainer.callbacks if isinstance(c, RequeueOnLostPeer))
        error = requeued.error or lost_peer_error(e, output_dir, requeue_plan()[1])  # under Slurm: requeued, said
        tracking.finish(logger, exit_code=1)
        raise error from e

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "val_ema/"))}
    result = {
        "val/top1_err": metrics.get("val/top1_err"),
        "val/top5_err": metrics.get("val/top5_err"),
        "val_ema/top1_err": metrics.get("val_ema/top1_err"),
        "val_ema/top5_err": metrics.get("val_ema/top5_err"),
        "reported": reported(cfg),
        "val/images": metrics.get("val/images"),
        "val/set_images": metrics.get("val/set_images"),
        "best/top1_err": _best_score(trainer.checkpoint_callback),  # the first one: best
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "wall_s": time.perf_counter() - start,
        "output_dir": str(output_dir),
        "best_ckpt": trainer.checkpoint_callback.best_model_path,
        "last_ckpt": str(output_dir / "checkpoints" / "last.ckpt"),
        "wandb_dir": tracking.run_folder(logger) if trainer.is_global_zero else None,  # W&B: on rank 0 only
        "wandb_parts": tracking.folders(logger) if trainer.is_global_zero else [],
        "wandb_url": tracking.url(logger) if trainer.is_global_zero else None,
    }
    protocol = cfg.data.get("eval_protocol", "center")
    preset = cfg.data.get("preset")
    partial = coverage(result["val/images"], result["val/set_images"])  # limit_val_batches: part of the set
    top1, top5 = result[f"{reported(cfg)}/top1_err"], result[f"{reported(cfg)}/top5_err"]  # eval_weights's
    comparison = summary_fields(top1, top5, protocol, references, cfg.data.name, preset, partial,
                                cfg.get("experiment_name"))
    if trainer.is_global_zero:
        tracking.summarize(logger, comparison)
    tracking.finish(logger, exit_code=0)  # close the run here, not at exit: train() may run again in-process
    if trainer.is_global_zero:
        print_summary(cfg, result)
        print_comparison(top1, top5, protocol, cfg.data.name, references, preset, partial=partial,
                         experiment=cfg.get("experiment_name"))
    return {**result, **comparison}


def _config_subdir() -> str | None:
    """Where Hydra wrote this start's config in the run folder (``.hydra``, ``.hydra/resumed-<time>``), or None."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().output_subdir if HydraConfig.initialized() else None


def _best_score(checkpoint: RunCheckpoint) -> float | None:
    return float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
