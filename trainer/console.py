"""What the console shows: what the user can act on. Four messages of the pinned libraries are not that,
and are filtered here at their source, each by its exact text or setting, so every other warning shows.

- Lightning's "The `srun` command is available on your system but is not used": printed on any machine
  with Slurm's client installed (a login node, a workstation), for every run that is not a Slurm step.
  Runs under Slurm are launched by `srun` in `slurm/*.sh` and the sweep launcher; a plain run is meant.
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated": Lightning 2.6's own pytree
  helper uses the old class (pytorch_lightning/utilities/_pytree.py); nothing a user can change.
- Lightning's "Tip: ... try installing litlogger": an advertisement, logged at every Trainer start.
- W&B's "The anonymous setting has no effect": Lightning's WandbLogger passes ``anonymous=None``,
  which W&B 0.31 counts as set; the setting is dropped before ``wandb.init`` (``drop_anonymous``).
"""

import logging
import warnings

LIGHTNING_TIP = "Tip: For seamless cloud logging"


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return LIGHTNING_TIP not in record.getMessage()


def quiet_known_noise() -> None:
    """Installs the filters (idempotent; call in every process before the Trainer is built)."""
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):  # rank_zero_info's
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropTip) for f in target.filters):
            target.addFilter(_DropTip())


def drop_anonymous(wandb_logger) -> None:
    """Removes the ``anonymous=None`` Lightning adds to ``wandb.init``'s arguments (see the module's text)."""
    init = getattr(wandb_logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
