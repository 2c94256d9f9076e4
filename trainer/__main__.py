"""``python -m trainer [overrides]``: the Hydra entry point."""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from data_pipelines import DataConfigError
from models.weights import WeightsError

from .callbacks import NonFiniteLossError
from .checkpoints import CheckpointError
from .devices import GPUUnusableError
from .split_strategy import StrategyConfigError

# Errors that are the user's input, not a bug: print the message (which says how to fix it), no traceback.
USER_ERRORS = (DataConfigError, CheckpointError, NonFiniteLossError, StrategyConfigError, GPUUnusableError,
               WeightsError)


def default_data_overrides(overrides: list[str], environ=os.environ) -> list[str]:
    """ImageNet when ``IMAGENET_ROOT`` is set and no data set was chosen, else the embedded digits.

    Hydra's defaults list cannot read the environment, so the choice is made here, on the
    command line, before Hydra composes the config.
    """
    if any(o.split("=", 1)[0].lstrip("+~") == "data" for o in overrides):
        return overrides
    if environ.get("IMAGENET_ROOT"):
        return [*overrides, "data=imagenet"]
    if environ.get("LOCAL_RANK", environ.get("SLURM_PROCID", "0")) == "0":  # once, not in every process
        print("IMAGENET_ROOT is not set: training on the embedded digits sample (data=digits)", file=sys.stderr)
    return overrides


MULTIRUN_REFUSED = (
    "error: Hydra multirun (-m) cannot be combined with strategy={strategy} here: Lightning starts each extra "
    "process by running this command again, and every copy would run its own sweep into its own folder. On "
    "Slurm, sweep with one job per point: python -m trainer -m hydra/launcher=slurm strategy={strategy} ... "
    "(README, \"Sweeps on Slurm\"); elsewhere, a shell loop over single runs (for lr in 0.01 0.02; do python -m "
    "trainer strategy={strategy} optim.lr=$lr; done).")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    in_process_sweep = hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.launcher._target_.endswith("BasicLauncher")
    if in_process_sweep and cfg.strategy.name != "single":
        print(MULTIRUN_REFUSED.format(strategy=cfg.strategy.name), file=sys.stderr)
        sys.exit(2)
    from .train import train  # heavy imports after Hydra has parsed the command line (fast --help)

    exit_on_user_error(train, cfg)


def exit_on_user_error(run, cfg: DictConfig) -> None:
    """Runs ``run(cfg)``; a mistake in the user's input prints its message (which says how to fix it)
    and exits with status 1, without a traceback."""
    try:
        run(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        if not lost_peer(e):
            raise
        print(lost_peer_message(e, cfg), file=sys.stderr)
        sys.exit(1)


# how the collectives report a peer that died (gloo: its socket closes) or hung (the process group's timeout)
LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "timed out", "Timed out",
                   "NCCL communicator was aborted", "remote process exited")


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a collective failing because another process of the run is gone."""
    import torch.distributed as dist

    while error is not None:
        if isinstance(error, dist.DistError) or (
                isinstance(error, RuntimeError) and any(sign in str(error) for sign in LOST_PEER_SIGNS)
                and dist.is_available() and dist.is_initialized()):
            return True
        error = error.__cause__ or error.__context__
    return False


def lost_peer_message(error: BaseException, cfg: DictConfig) -> str:
    rank, world = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "?")), os.environ.get(
        "WORLD_SIZE", os.environ.get("SLURM_NTASKS", "?"))
    last = os.path.join(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    resume = (f"its last checkpoint is {last}; " if os.path.exists(last) else "it has no checkpoint yet; ") + (
        "a requeued Slurm job resumes from it by itself (scontrol requeue, or sbatch --requeue on a node failure)"
        if os.environ.get("SLURM_JOB_ID") else f"start the same command again with ckpt_path={last} to resume")
    cause = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    return (f"error: process {rank} of {world} lost contact with another process of this run ({cause}). A node or "
            f"process has died or hung, so the run stops here instead of waiting; {resume}.")


def main() -> None:
    sys.argv[1:] = default_data_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
