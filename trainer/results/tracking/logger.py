"""The W&B run a training or an evaluation writes: online or offline, the logger (its id kept across resumes, a
sweep point's group and name), its summary, closing it whatever happened, an evaluation's part."""

import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any

from ... import target_is
from .folders import run_parts, validations_logged

log = logging.getLogger(__name__)


def wandb_online_configured() -> bool:
    """True when the user has set W&B up to sync: ``WANDB_MODE=online``, ``WANDB_API_KEY``, or a
    ``wandb login`` entry in ~/.netrc. Without one of these, runs are kept offline on disk."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return False
    if mode in ("online", "run") or os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(logger_cfg) -> bool:
    """``logger.offline`` when the config sets it, else offline unless W&B is set up to sync."""
    offline = logger_cfg.get("offline")
    return (not wandb_online_configured()) if offline is None else bool(offline)


def own_service() -> None:
    """W&B hands its service's address to child processes in WANDB_SERVICE. Inherited from whatever started this
    command (a notebook, a test runner that ran W&B itself), it attaches this run to that process's service,
    where an earlier start of the same run that was killed may still hold the run id: the resume then fails
    with "run ID ... is in use". Every run owns its own W&B service."""
    os.environ.pop("WANDB_SERVICE", None)


def wandb_places(environ=os.environ) -> dict[str, Path]:
    """Where W&B writes outside the run folder: its settings, its cache and its data (artifacts' staging)."""
    home = Path(environ.get("HOME", "~"))
    return {"WANDB_CONFIG_DIR": Path(environ.get("WANDB_CONFIG_DIR") or home / ".config" / "wandb"),
            "WANDB_CACHE_DIR": Path(environ.get("WANDB_CACHE_DIR") or home / ".cache" / "wandb"),
            "WANDB_DATA_DIR": Path(environ.get("WANDB_DATA_DIR") or home / ".local" / "share" / "wandb")}


def uses_wandb(logger_cfg) -> bool:
    """Whether the config's logger is W&B's (``logger=wandb``)."""
    from pytorch_lightning.loggers import WandbLogger

    return target_is(logger_cfg, WandbLogger)


def is_wandb(logger) -> bool:
    """Whether a built logger is W&B's."""
    from pytorch_lightning.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def wandb_logger(cfg, output_dir: Path, run_id: str | None = None):
    """Lightning's W&B logger for ``cfg.logger``, writing under ``output_dir``; ``run_id``: continue that W&B run
    (a resumed or requeued run keeps its id: one W&B run)."""
    from hydra.utils import instantiate

    kwargs: dict[str, Any] = {"save_dir": str(output_dir), "offline": wandb_offline(cfg.logger)}
    if run_id:
        kwargs.update(id=run_id, resume="allow")
    logger = instantiate(cfg.logger, **kwargs, **sweep_labels(cfg))
    # Lightning passes anonymous=None to wandb.init, which W&B 0.31 counts as set and warns about ("The anonymous
    # setting has no effect"): dropped before the run starts
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
    return logger


def sweep_labels(cfg) -> dict:
    """For a point of a sweep (``-m``): the W&B group names the configuration less its seed (the experiment and
    the point's overrides other than ``seed``), so that the seeds of one configuration are one group in W&B, as
    they are one row in ``trainer.report``; the run name adds the point's swept values, and a tag names the
    sweep. Empty for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir)
    try:  # the sweep's command line, which Hydra saved before launching: what varies has a sweep expression there
        command_line = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
    except (OSError, AttributeError):
        command_line = hydra_cfg.overrides.task
    swept = {o.get_key_element() for o in OverridesParser.create().parse_overrides(list(command_line))
             if o.is_sweep_override()}
    point = ",".join(o for o in hydra_cfg.overrides.task if o.split("=", 1)[0] in swept)
    configuration = " ".join([cfg.experiment_name, *(o for o in hydra_cfg.overrides.task
                                                     if o.split("=", 1)[0].lstrip("+~") not in ("seed", "experiment"))])
    if len(configuration) > 128:  # W&B's limit for a group name
        import hashlib

        configuration = f"{configuration[:119]}~{hashlib.sha1(configuration.encode()).hexdigest()[:8]}"
    return {"group": configuration, "name": f"{cfg.logger.name}-{point}" if point else cfg.logger.name,
            "tags": [*cfg.logger.get("tags", []), f"sweep-{sweep_dir.name}"]}


def run_folder(logger) -> str | None:
    """The folder of the W&B run part this process writes (``<run>/wandb/offline-run-...``), or None."""
    return str(Path(logger.experiment.dir).parent) if is_wandb(logger) else None


def folders(logger) -> list[str]:
    """Every folder of this W&B run: a run resumed offline has one per start (W&B joins them on upload)."""
    if not (folder := run_folder(logger)):
        return []
    current = Path(folder)
    return [str(p) for p in run_parts(current.parent, logger.experiment.id)] or [str(current)]


def summarize(logger, fields: dict) -> None:
    """``fields`` into the W&B run's summary (the papers' figures and the gaps, a stop), when W&B is the logger."""
    if run_folder(logger):
        logger.experiment.summary.update(fields)


def finish(logger, exit_code: int) -> None:
    """Closes the W&B run, if this process started one. A failed close after a failed run is a warning (W&B
    cannot write either, a full disk: the run's own error is the one to say)."""
    if is_wandb(logger) and logger._experiment is not None:
        try:
            logger.experiment.finish(exit_code=exit_code)
        except Exception as e:
            if exit_code == 0:
                raise
            log.warning("W&B could not close the run: %s", e)
            let_go()


def let_go() -> None:
    """W&B's own process is gone (Slurm signals every process of a job; a full disk): its exit hook would only
    print a traceback at exit. Torn down here instead, which takes the hook off first, whatever it then meets."""
    import wandb

    try:
        wandb.teardown(exit_code=1)
    except Exception:  # noqa: BLE001 - the process it would talk to is gone: nothing more to do
        pass


def record_stop(logger, stopped: str, epoch: int) -> None:
    """A run stopped by a signal, its checkpoint written: the stop in the W&B summary (the report reads it), and
    the run closed as finished (it is resumable, not failed)."""
    try:
        summarize(logger, {"stopped": stopped, "epoch": epoch})
        finish(logger, exit_code=0)
    except Exception as failed:  # noqa: BLE001 - Slurm signals every process of a job: W&B's own may be gone
        log.warning("W&B could not record the stop (its process had stopped too: %s); the checkpoint is written",
                    (str(failed).strip().splitlines() or [type(failed).__name__])[0])
        let_go()


def finish_started(exit_code: int) -> Path | None:
    """A stop during set-up: the W&B run closed if it had started; its folder (this start's part), or None."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return None
    part = Path(wandb.run.dir).parent  # closed before its folder goes
    wandb.run.finish(exit_code=exit_code)
    return part


def log_evaluation(run_id: str, logger_cfg, fields: dict, protocol: str, here: Path) -> str:
    """An evaluation's figures into the W&B run that trained the checkpoint, as its own part in the evaluation's
    folder (``<run>/evaluate/<protocol>_<time>/``: ``<run>/wandb`` and its latest-run stay the training's, which
    is what a user opens first), under ``eval/<protocol>/`` only (training's own paper/*, gap/* and val/* stay as
    training wrote them). Returns the part's folder."""
    import wandb

    run = wandb.init(id=run_id, resume="allow", project=logger_cfg.project, dir=str(here),
                     mode="offline" if wandb_offline(logger_cfg) else "online")
    run.summary.update({k if k.startswith("eval/") else f"eval/{protocol}/{k.replace('/', '_')}": v
                        for k, v in fields.items()})
    run.finish()
    return str(Path(run.dir).parent)


def define_summaries(logger, metrics: tuple[str, ...]) -> None:
    """The W&B summary keeps the best (lowest) and the last value of each of ``metrics``."""
    for metric in metrics:
        logger.experiment.define_metric(metric, summary="min,last")


def log_missing_validations(logger, val_history: list[dict]) -> list[dict]:
    """A resumed run: the validation results of its checkpoint that no W&B folder of its run id holds (a
    ``kill -9`` can lose what W&B's process had not written), logged again. Returns those."""
    run = logger.experiment
    logged = validations_logged(Path(run.dir).parent.parent, run.id, current=Path(run.dir).parent)
    missing = [h for h in val_history if h["trainer/global_step"] not in logged]
    for record in missing:
        run.log(record)
    return missing


def url(logger) -> str | None:
    """The W&B run's address online, or None (offline, or another logger)."""
    return getattr(logger.experiment, "url", None) if run_folder(logger) else None


def where(logger) -> str:
    """The run's address: its URL online, its folder offline."""
    run = logger.experiment
    return getattr(run, "url", None) or f"offline, {Path(run.dir).parent}"
