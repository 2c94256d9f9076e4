"""Checkpoint files: written atomically, loaded without running code, checked against the run."""

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from .checkpoint_file import CheckpointError, check_checkpoint_file
from .steps import at_epochs_last_batch, optimizer_steps_on_this_batch, stops_mid_epoch

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with its state key formatted once, and a run folder that may move.

    Lightning formats every callback's ``state_key`` for each hook it calls, on every step (for its
    profiler's record names); ModelCheckpoint's is the repr of five settings, 3 µs a time, 6 hooks a
    step. The key is the one ModelCheckpoint itself gives, so checkpoints written before and after
    this class restore each other's callback state (best score and path).

    A run folder copied elsewhere (scratch to project storage) and resumed there: Lightning drops the
    best score when the checkpoint's folder name differs, and the next validation then overwrites
    best.ckpt with whatever it scores. When the files the state names are here, the state is moved here.

    With accumulated batches (``trainer.accumulate_grad_batches``) nothing is written inside a window: the
    gradients summed so far are not in a checkpoint, so one written there resumes without them. (Lightning's
    every-N-steps test saw the global step of a resume's first batch as new, and wrote one.)
    """

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        if optimizer_steps_on_this_batch(trainer):
            super()._save_checkpoint(trainer, filepath)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new and self._moved_here(state_dict):
            def here(path: str | None) -> str | None:
                return str(Path(new) / Path(path).name) if path else path

            state_dict = {**state_dict, "dirpath": new,
                          "best_model_path": here(state_dict.get("best_model_path")),
                          "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                          "last_model_path": here(state_dict.get("last_model_path")) or "",
                          "best_k_models": {here(p): v for p, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)

    def _moved_here(self, state_dict: dict[str, Any]) -> bool:
        """Whether every checkpoint the state names (best, k-th best, top k) is in this folder under its name."""
        named = {state_dict.get("best_model_path"), state_dict.get("kth_best_model_path"),
                 *state_dict.get("best_k_models", {})} - {None, ""}
        saved_in, now_in = Path(state_dict["dirpath"]), Path(self.dirpath)
        return bool(named) and all(Path(p).parent == saved_in and (now_in / Path(p).name).is_file() for p in named)

    def _save_topk_checkpoint(self, trainer, monitor_candidates: dict[str, Any]) -> None:
        # A run stopped (trainer.max_steps) before its first validation has no score to keep a best checkpoint by:
        # said once in our words, not as Lightning's hint that the user's code forgot to log the metric.
        if self.monitor and self.monitor not in monitor_candidates and \
                not trainer.fit_loop.epoch_loop.val_loop._has_run:
            if not self.__dict__.get("_said_no_best") and trainer.is_global_zero:
                log.info("no best checkpoint: the run stopped before its first validation (best.ckpt follows %s); "
                         "last.ckpt holds the run", self.monitor)
            self.__dict__["_said_no_best"] = True
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            own = ModelCheckpoint.state_key.fget(self)  # prefixed with this class's name
            key = self.__dict__["_state_key"] = "ModelCheckpoint" + own[len(type(self).__qualname__):]
        return key


class LastCheckpoint(RunCheckpoint):
    """``last.ckpt``: at each epoch's end (after its validation), every ``every_n_train_steps`` steps when set,
    and at the step where ``trainer.max_steps`` stops the run in mid-epoch; never for an epoch cut short.

    Lightning saves its epoch-end state also for an epoch that ``max_steps`` cut short, and a run resumed
    from it starts the next epoch: the rest of the epoch and its validation were skipped without a word. A
    checkpoint written at an epoch's last batch, before its validation, resumes with that validation
    skipped (Lightning counts the epoch as done). So the mid-epoch state is saved at the stopping step
    (resumed, the epoch goes on from the next batch, the data position restored), the every-N checkpoint
    leaves out an epoch's last batch (the epoch's own checkpoint follows its validation), and the epoch-end
    save is left out for an epoch that did not end.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if at_epochs_last_batch(trainer):
            return
        if stops_mid_epoch(trainer) and not self._every_n_train_steps:
            trainer.save_checkpoint(Path(self.dirpath) / f"{self.filename}{self.FILE_EXTENSION}", weights_only=False)
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if at_epochs_last_batch(trainer):
            super().on_train_epoch_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its target, fsyncs it, then renames it into place.

    A crash mid-write leaves the previous checkpoint intact. (Lightning's own save goes through an
    fsspec transaction whose temporary file lives in /tmp; the final move is then a copy, not an
    atomic rename, whenever /tmp is another file system.) Loading is always ``weights_only``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:  # a full disk, a folder made read-only: one message, with the last good checkpoint
            from .storage import write_failed

            tmp.unlink(missing_ok=True)
            raise write_failed(path, e) from e
        except RuntimeError as e:  # torch.save's zip writer reports a short write (a full disk) as a RuntimeError
            import errno
            import shutil

            full = shutil.disk_usage(path.parent).free < 2**20  # measured before the temporary file goes
            tmp.unlink(missing_ok=True)
            if not full:
                raise
            from .storage import write_failed

            raise write_failed(path, OSError(errno.ENOSPC, "No space left on device")) from e
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = True):
        return load_checkpoint(path, map_location=map_location or "cpu")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Removes the temporary files (``.<name>.ckpt.tmp-<pid>``) that writes killed mid-way left in ``folder``,
    those of processes no longer running; returns them. They are this writer's own, never a checkpoint."""
    removed = []
    for tmp in Path(folder).glob(".*.ckpt.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # a live process's write in progress
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load_checkpoint(path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Loads one of this trainer's checkpoints with ``torch.load(weights_only=True)``: tensors and plain data only,
    no code; then checks its shape (a dict with the network's ``state_dict``).

    ``mmap``: map the tensors' bytes instead of reading them (cheap when only the metadata is needed).

    Raises:
        CheckpointError: one line naming the file and what is wrong: missing, a folder, not a checkpoint (empty,
            text, another format), damaged (cut short, a byte changed: whatever error unpickling it raises), holding
            objects that would need code to rebuild, or holding something other than a checkpoint's dict.
    """
    path = check_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain data, "
                              f"and loading them could run code from the file ({first_line(e)})") from e
    except Exception as e:  # noqa: BLE001 - any other failure to unpickle is a damaged file: named, in one line
        raise CheckpointError(f"{path} is not a readable checkpoint (cut short, or damaged): {type(e).__name__}: "
                              f"{first_line(e)}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        what = (f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else
                f"a dict without a state_dict (its keys: {', '.join(map(str, list(ckpt)[:5])) or 'none'})")
        raise CheckpointError(f"{path} is not a checkpoint written by this trainer: it holds {what}, not the dict of "
                              f"state_dict, hyper_parameters and training state a run writes")
    return ckpt


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def check_compatible(path, model_name: str, num_classes: int, mmap: bool = False) -> dict[str, Any]:
    """Checks that a checkpoint was trained with the same model and class count as this run.

    Returns:
        The checkpoint (loaded once: the caller reads what else it needs from it).

    Raises:
        CheckpointError: naming what differs and how to fix it.
    """
    ckpt = load_checkpoint(path, mmap=mmap)  # mmap: the tensors are not read (a check before the run)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not hparams:
        raise CheckpointError(f"{path} is not a checkpoint written by this trainer (no hyper_parameters)")
    theirs = (hparams.get("model_name"), hparams.get("num_classes"))
    if theirs != (model_name, num_classes):
        raise CheckpointError(f"{path} is a checkpoint of model={theirs[0]} with {theirs[1]} classes, but this run "
                              f"is model={model_name} with {num_classes} classes; pass model={theirs[0]} and a "
                              f"data set with {theirs[1]} classes, or another checkpoint")
    return ckpt


COMPILED_NET, NET = "net._orig_mod.", "net."  # torch.compile's wrapper puts the network under _orig_mod


def plain_names(state: dict[str, Any]) -> dict[str, Any]:
    """A LightningModule state dict with the network's own names, whether or not it was compiled: what every
    checkpoint holds, so that any command loads it, compiled or not (``module.py``'s checkpoint hooks)."""
    return {NET + k[len(COMPILED_NET):] if k.startswith(COMPILED_NET) else k: v for k, v in state.items()}


def compiled_names(state: dict[str, Any]) -> dict[str, Any]:
    """The converse, for a module whose network is compiled."""
    return {COMPILED_NET + k[len(NET):] if k.startswith(NET) else k: v for k, v in plain_names(state).items()}


def checkpoint_weights(ckpt: dict[str, Any], which: str = "live", path=None) -> dict[str, Any]:
    """The LightningModule's weights a checkpoint holds: the trained ones (``live``) or their moving average
    (``ema``: ``callbacks/ema.py``).

    Raises:
        CheckpointError: ``ema`` asked of a checkpoint of a run without an average.
    """
    if which != "ema":
        return plain_names(ckpt["state_dict"])
    if "ema_state_dict" not in ckpt:
        raise CheckpointError(f"{path} holds no moving average of the weights (its run had ema.decay=null): ask "
                              f"for its trained weights (eval_weights=live, or export --weights live)")
    return plain_names(ckpt["ema_state_dict"])
