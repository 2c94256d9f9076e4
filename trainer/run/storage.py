"""Where a run writes, checked before it starts, and a write that fails while it runs: each one message.

A run writes into its folder (checkpoints, console.log, W&B's files), the project's cache (the embedded
digits, ``CONVNET_CACHE``) and W&B's own settings and caches under ``HOME``. A place it cannot write is found
before anything starts (``check_places``), and a checkpoint write that fails mid-run (a full disk) stops the
run with what failed, the path, the last good checkpoint and the command that resumes from it
(``WriteFailed``); the earlier checkpoint is intact (``checkpoints.AtomicCheckpointIO``).
"""

import errno
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..results.tracking import uses_wandb, wandb_places


class StorageError(OSError):
    """A place the run must write to and cannot; the message names it and what to do."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def _writable(path: Path) -> bool:
    """Whether ``path`` can be written, or created (its nearest existing parent writable)."""
    path = path.expanduser()
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK) if path.is_dir() else os.access(path, os.W_OK)


HOME_FREE = ("CONVNET_CACHE", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")  # all set: HOME is not read


def check_home(environ=os.environ) -> None:
    """``HOME`` set, or every place that lives under it by default given elsewhere (``HOME_FREE``)."""
    missing = [variable for variable in HOME_FREE if not environ.get(variable)]
    if not environ.get("HOME") and missing:
        raise StorageError(f"HOME is not set: this tool's cache (~/.cache/convnet-classics) and W&B's settings "
                           f"(~/.config/wandb) live under it. Set HOME to your home folder, or set "
                           f"{', '.join(missing)} (as well as {', '.join(v for v in HOME_FREE if v not in missing)})"
                           if len(missing) < len(HOME_FREE) else
                           "HOME is not set: this tool's cache (~/.cache/convnet-classics) and W&B's settings "
                           "(~/.config/wandb) live under it. Set HOME to your home folder (or CONVNET_CACHE, and "
                           "W&B's WANDB_CONFIG_DIR, WANDB_CACHE_DIR and WANDB_DATA_DIR)")


def check_places(cfg: DictConfig, run_folder: Path | None = None, environ=os.environ) -> None:
    """Every place the run will write, writable, before anything is created.

    Raises:
        StorageError: naming the place, why, and what to do.
    """
    check_home(environ)
    if uses_wandb(OmegaConf.select(cfg, "logger", default=None)):
        for variable, place in wandb_places(environ).items():
            if not _writable(place):
                raise StorageError(f"W&B cannot write {place} ({variable}; HOME={environ.get('HOME')} is read-only "
                                   f"there): set {variable} (and the other WANDB_*_DIR) to a folder you can write, "
                                   f"or HOME, or train with logger=csv or logger=none")
    if OmegaConf.select(cfg, "data.name", default=None) == "digits":
        root = Path(str(OmegaConf.select(cfg, "data.root"))).expanduser()
        if not (root / "convnet-classics.json").is_file() and not _writable(root):
            raise StorageError(f"the embedded digits are written once to {root}, which cannot be created there "
                               f"(read-only): set CONVNET_CACHE to a folder you can write (or data.root=...)")
    if run_folder is not None:
        for place in (run_folder, run_folder / "checkpoints", run_folder / "wandb"):
            if place.exists() and not _writable(place):
                raise StorageError(f"{place} is read-only: a resumed run writes its checkpoints, console.log and W&B "
                                   f"files into its folder. Make it writable, or resume into a new folder: "
                                   f"hydra.run.dir=<new folder> ckpt_path=...")


def free_mib(path: Path) -> float | None:
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return None


class WriteFailed(StorageError):
    """A checkpoint that could not be written; the message gives the last good one and how to resume."""


def write_failed(path: Path, error: OSError) -> WriteFailed:
    """The one message of a checkpoint write that failed (``error``): what, where, the last good checkpoint."""
    from . import interrupt

    folder = path.parent
    kept = [path] if path.is_file() else []
    kept += sorted((p for p in folder.glob("*.ckpt") if p != path), key=lambda p: p.stat().st_mtime, reverse=True)
    free = free_mib(folder)
    what = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else (error.strerror or str(error))
    where = f" ({free:.1f} MiB free there)" if free is not None else ""
    if kept:
        last = kept[0]
        tail = (f"The last good checkpoint is {last}, intact: make room and resume with: "
                f"{interrupt.resume_command(last)}")
    else:
        tail = "No checkpoint had been written yet: make room and start the run again"
    return WriteFailed(f"writing the checkpoint {path} failed: {what}{where}. {tail}")
