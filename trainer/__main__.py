"""``python -m trainer [overrides]``: the Hydra entry point."""

import os
import sys

import hydra
from omegaconf import DictConfig

from data_pipelines import DataLayoutError

from .callbacks import NonFiniteLossError
from .checkpoints import CheckpointError

# Errors that are the user's input, not a bug: print the message (which says how to fix it), no traceback.
USER_ERRORS = (DataLayoutError, CheckpointError, NonFiniteLossError)


def default_data_overrides(overrides: list[str], environ=os.environ) -> list[str]:
    """ImageNet when ``IMAGENET_ROOT`` is set and no data set was chosen, else the embedded digits.

    Hydra's defaults list cannot read the environment, so the choice is made here, on the
    command line, before Hydra composes the config.
    """
    if any(o.split("=", 1)[0].lstrip("+~") == "data" for o in overrides):
        return overrides
    if environ.get("IMAGENET_ROOT"):
        return [*overrides, "data=imagenet"]
    if "LOCAL_RANK" not in environ:  # say it once, not again in each DDP child process
        print("IMAGENET_ROOT is not set: training on the embedded digits sample (data=digits)", file=sys.stderr)
    return overrides


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _main(cfg: DictConfig) -> None:
    from .train import train  # heavy imports after Hydra has parsed the command line (fast --help)

    try:
        train(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    sys.argv[1:] = default_data_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
