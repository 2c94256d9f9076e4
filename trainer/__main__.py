"""``python -m trainer [overrides]``: the Hydra entry point. Before Hydra starts, the run's values are checked
(a bad one stops here, with nothing written) and its folder is claimed (``run/run_folder.py``). From its first line
a signal stops it cleanly (``run/interrupt.py``)."""

if __name__ == "__main__":  # before the imports below (a second or two): Ctrl-C then is this tool's too
    from .run import interrupt as _interrupt

    _interrupt.install()

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import CONF
from .cli import (
    REFUSED,
    default_data_overrides,
    did_you_mean,
    exit_on_user_error,
    override_syntax_error,
    override_value,
    pause_collector,
    resume_collector,
    run_folder_of,
)
from .config_check import ConfigValueError, check_data_root, check_values
from .results import tracking
from .run import console, interrupt
from .run.run_folder import RunFolderError, claim_run_folder, hold, launched_alone, remove_unstarted

MULTIRUN_REFUSED = (
    "error: Hydra multirun (-m) cannot be combined with strategy={strategy} here: Lightning starts each extra "
    "process by running this command again, and every copy would run its own sweep into its own folder. On "
    "Slurm, sweep with one job per point: python -m trainer -m hydra/launcher=slurm strategy={strategy} ... "
    "(docs/cluster.md, \"Sweeps on Slurm\"); elsewhere, a shell loop over single runs (for lr in 0.01 0.02; "
    "do python -m trainer strategy={strategy} optim.lr=$lr; done).")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    # by name: Hydra's plugin scan executes the launchers' modules again, so their classes are not one object
    in_process_sweep = hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.launcher._target_.endswith(".BasicLauncher")
    if in_process_sweep and cfg.strategy.name != "single":
        print(MULTIRUN_REFUSED.format(strategy=cfg.strategy.name), file=sys.stderr)
        sys.exit(REFUSED)
    pause_collector()  # main() paused it; a sweep point on Slurm (submitit's process) starts here, without main()
    from .train import train  # heavy imports after Hydra has parsed the command line (fast --help)

    resume_collector()

    with console.copied_to(Path(hydra_cfg.runtime.output_dir)):
        exit_on_user_error(train, cfg)


def check_before_start(overrides: list[str]) -> list[str]:
    """The composed config's values checked before Hydra creates the run folder: a bad value stops here,
    with nothing written. Then the run's folder is claimed (``trainer/run/run_folder.py``): the overrides come back
    with ``hydra.run.dir`` (``hydra.sweep.dir`` for ``-m``) naming the folder this run owns. Command lines with
    other flags (``--help``, ``--cfg``) and ones Hydra itself refuses are left to Hydra; ``train()`` checks the
    values again in every case."""
    if any(arg in ("-m", "--multirun") for arg in overrides):
        return claim_sweep_folder(overrides)
    if any(arg.startswith("-") for arg in overrides):
        return overrides
    from hydra import compose, initialize_config_dir

    from .run.storage import StorageError, check_home, check_places

    try:
        check_home()
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(REFUSED)
    if unreadable := override_syntax_error(overrides):
        print(f"error: {unreadable}", file=sys.stderr)
        sys.exit(REFUSED)
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    except Exception as e:  # an unknown key or option: the nearest real one, else Hydra's own message (_main)
        message = misspelt(e, overrides)
        if message is None:
            return overrides
        print(f"error: {message}", file=sys.stderr)
        sys.exit(REFUSED)
    from .parallel.devices import GPUUnusableError, check_gpus_usable  # torch: imported by the run anyway

    try:
        check_values(cfg)
        check_gpus_usable(cfg.trainer.accelerator)
        check_data_root(cfg, first_process=console.process_rank() == 0)
        if cfg.get("ckpt_path"):  # the checkpoint's model and schedule against this run's (loads torch: only here)
            from .run.checkpoint_file import CheckpointError, check_checkpoint_file

            try:
                check_checkpoint_file(cfg.ckpt_path)  # not a checkpoint at all: said before torch loads
                from .run.checkpoints import check_compatible
                from .run.resume import resume_plan

                resumed = check_compatible(cfg.ckpt_path, cfg.model.model_name, cfg.data.num_classes, mmap=True)
                resume_plan(resumed, cfg, cfg.ckpt_path)
            except CheckpointError as e:
                raise ConfigValueError(str(e)) from None
        folder = Path(cfg.hydra.run.dir)
        resumed_here = cfg.get("ckpt_path") and run_folder_of(cfg.ckpt_path) == folder.expanduser().resolve()
        check_places(cfg, run_folder=folder if resumed_here else None)
        return claim_folder(overrides, folder)
    except (ConfigValueError, GPUUnusableError, RunFolderError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(REFUSED)


def misspelt(error: Exception, overrides: list[str]) -> str | None:
    """An option the config group does not have (``model=resnt18``): the nearest ones, in one line where Hydra
    lists its search path. An override of a key the config does not have (``trainer.max_epoch=1``): which key
    was meant (Hydra would offer to add it with ``+``, which lets a typo pass silently). None for any other
    error."""
    import difflib
    import re

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    option = re.search(r"Could not find '([\w/.-]+)/([^'/]+)'", str(error))
    if option:  # a typo in an option: model=resnt18
        group, name = option.groups()
        choices = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        if not choices:
            return None
        return (f"{group}={name} is not an option of {group}{did_you_mean(group, name, choices, n=2)} (the options: "
                f"{', '.join(choices)})")
    found = re.search(r"Could not override '([^']+)'", str(error))
    if not found:
        return None
    key = found.group(1)
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = OmegaConf.to_container(compose(config_name="train", overrides=kept), resolve=False)
    except Exception:
        return None

    def keys(node, prefix=""):
        for k, v in node.items():
            yield f"{prefix}{k}"
            if isinstance(v, dict):
                yield from keys(v, f"{prefix}{k}.")

    near = difflib.get_close_matches(key, list(keys(cfg)), n=1, cutoff=0.75)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    return (f"{key} is not a setting of this config; {hint}(python -m trainer --cfg job prints every setting; a "
            f"new key is added on purpose with +{key}=...)")


def claim_folder(overrides: list[str], folder: Path) -> list[str]:
    """``overrides`` with ``hydra.run.dir`` set to the folder this run owns (``run_folder.claim_run_folder``);
    unchanged for a resume in its own folder and for the processes a launcher started together."""
    given = override_value(overrides, "hydra.run.dir") is not None
    ckpt = override_value(overrides, "ckpt_path")
    if not launched_alone():
        return overrides  # several processes share the folder they are given
    if given and ckpt and run_folder_of(ckpt) == folder.expanduser().resolve():
        hold(folder.expanduser().resolve())  # a resume continues its own folder: one start at a time
        return overrides
    owned = claim_run_folder(folder, given, overrides)
    hold(owned)
    return overrides if given else [*overrides, f"hydra.run.dir={owned}"]


def claim_sweep_folder(overrides: list[str]) -> list[str]:
    """For ``-m``: a sweep folder of its own (``multirun/<date>_<time>``, or the next free ``-N`` name), so that
    two sweeps started in the same second do not write their points into one folder."""
    if override_value(overrides, "hydra.sweep.dir") is not None or not launched_alone():
        return overrides
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    setup_globals()  # Hydra's ${now:...}
    pattern = OmegaConf.load(CONF / "train.yaml").hydra.sweep.dir
    folder = Path(OmegaConf.create({"dir": pattern}).dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for candidate in [folder, *(folder.with_name(f"{folder.name}-{n}") for n in range(1, 1000))]:
        try:
            candidate.mkdir()  # exclusive
        except FileExistsError:
            continue
        return [*overrides, f"hydra.sweep.dir={candidate}"]
    return overrides


def resume_in_place(overrides: list[str]) -> list[str]:
    """A resume continues its run: ``ckpt_path`` inside one of this project's run folders
    (``<run>/checkpoints/*.ckpt`` beside ``<run>/.hydra``) makes that folder the run folder again, so its
    checkpoints, best score, log file and W&B run go on. The earlier config files are kept: this start's go
    to ``.hydra/resumed-<date>_<time>/``. ``hydra.run.dir=...`` naming another folder starts a new run there
    from the checkpoint (a new or empty folder: ``trainer/run/run_folder.py``)."""
    from datetime import datetime

    ckpt = override_value(overrides, "ckpt_path")
    if not ckpt or override_value(overrides, "hydra.output_subdir") is not None:
        return overrides
    run = run_folder_of(ckpt)
    if run is None or Path(ckpt).expanduser().resolve().parent.name != "checkpoints":
        return overrides
    given = override_value(overrides, "hydra.run.dir")
    if given is not None and Path(given).expanduser().resolve() != run:
        return overrides
    started = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    here = [] if given is not None else [f"hydra.run.dir={run}"]
    return [*overrides, *here, f"hydra.output_subdir=.hydra/resumed-{started}"]


def main() -> None:
    pause_collector()  # until the libraries are loaded (_main)
    tracking.own_service()  # not one inherited from whatever started this command
    try:
        interrupt.setup_begins()
        sys.argv[1:] = check_before_start(resume_in_place(default_data_overrides(sys.argv[1:])))
        _main()
    except interrupt.StoppedBeforeTraining as stop:
        stopped_before_training(stop)
    finally:  # the command is over: a late Ctrl-C must not kill W&B's closing at exit (nor turn 130 into -2)
        interrupt.ignore_from_here()
    if interrupt.received:  # after training had ended: the run is complete
        if console.process_rank() == 0:
            print(f"{interrupt.NAMES[interrupt.received[0]]} arrived after training had ended: the run is complete "
                  f"(nothing to resume)", file=sys.stderr)
        sys.exit(interrupt.EXIT_STATUS[interrupt.received[0]])


def stopped_before_training(stop: "interrupt.StoppedBeforeTraining") -> None:
    """A signal in set-up: W&B closed if it had started, what this start made removed, one line; exits."""
    part = tracking.finish_started(stop.exit_status)
    removed = remove_unstarted(override_value(sys.argv[1:], "hydra.run.dir"),
                               override_value(sys.argv[1:], "hydra.output_subdir"), part)
    if console.process_rank() == 0:
        print(f"\nstopped by {interrupt.NAMES[stop.signum]} during set-up, before training began: nothing was "
              f"trained{removed}", file=sys.stderr)
    sys.exit(stop.exit_status)

if __name__ == "__main__":
    main()
