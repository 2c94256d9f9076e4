"""Checkpoint files: written atomically, loaded without running code, checked against the run."""

import os
from pathlib import Path
from typing import Any

import pickle

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run: missing, unsafe, or of another model."""


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with its state key formatted once, and a run folder that may move.

    Lightning formats every callback's ``state_key`` for each hook it calls, on every step (for its
    profiler's record names); ModelCheckpoint's is the repr of five settings, 3 µs a time, 6 hooks a
    step. The key is the one ModelCheckpoint itself gives, so checkpoints written before and after
    this class restore each other's callback state (best score and path).

    A run folder copied elsewhere (scratch to project storage) and resumed there: Lightning drops the
    best score when the checkpoint's folder name differs, and the next validation then overwrites
    best.ckpt with whatever it scores. When the files the state names are here, the state is moved here.
    """

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

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            own = ModelCheckpoint.state_key.fget(self)  # prefixed with this class's name
            key = self.__dict__["_state_key"] = "ModelCheckpoint" + own[len(type(self).__qualname__):]
        return key


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
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = True):
        return load_checkpoint(path, map_location=map_location or "cpu")


def load_checkpoint(path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Loads a checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only, no code.

    ``mmap``: map the tensors' bytes instead of reading them (cheap when only the metadata is needed).

    Raises:
        CheckpointError: the file is missing, is not a checkpoint, or holds objects that would need
            arbitrary code to rebuild.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain data, "
                              f"and loading them could run code from the file ({str(e).splitlines()[0]})") from e
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from e


def check_compatible(path, model_name: str, num_classes: int, mmap: bool = False) -> dict[str, Any]:
    """Checks that a checkpoint was trained with the same model and class count as this run.

    Returns:
        The checkpoint (loaded once: the caller reads what else it needs from it).

    Raises:
        CheckpointError: naming what differs and how to fix it.
    """
    ckpt = load_checkpoint(path, mmap=mmap)  # mmap: the tensors are not read (a check before the run)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by this trainer (no hyper_parameters)")
    theirs = (hparams.get("model_name"), hparams.get("num_classes"))
    if theirs != (model_name, num_classes):
        raise CheckpointError(f"{path} is a checkpoint of model={theirs[0]} with {theirs[1]} classes, but this run "
                              f"is model={model_name} with {num_classes} classes; pass model={theirs[0]} and a "
                              f"data set with {theirs[1]} classes, or another checkpoint")
    return ckpt


def schedule_changes(resumed: dict[str, Any], scheduler_cfg, replan: bool) -> dict[str, Any]:
    """What a resumed run's LR schedule plans differently from the checkpoint's (the cosine's ``T_max`` follows
    ``trainer.max_epochs``, so extending a run moves it).

    Returns:
        The settings to apply to the checkpoint's schedule (``replan``), else nothing.

    Raises:
        CheckpointError: for a change without ``replan``: the learning rate's course would change silently (a
            cosine with a larger ``T_max`` picks up at a higher LR). The message gives the two honest choices.
    """
    from omegaconf import OmegaConf

    states = resumed.get("lr_schedulers") or []
    if scheduler_cfg is None or not states:
        return {}
    planned = {k: v for k, v in OmegaConf.to_container(scheduler_cfg, resolve=True).items() if not k.startswith("_")}
    changed = {k: (states[0][k], v) for k, v in planned.items() if k in states[0] and states[0][k] != v}
    if not changed or replan:
        return {k: new for k, (_, new) in changed.items()}
    setting = ", ".join(f"{k}={old} in the checkpoint, {new} now" for k, (old, new) in changed.items())
    keep = " ".join(f"trainer.max_epochs={old}" if k == "T_max" else f"schedule.scheduler.{k}={old}"
                    for k, (old, _) in changed.items())
    raise CheckpointError(f"this run's LR schedule differs from the checkpoint's ({setting}); resuming would change "
                          f"the learning rate's course without saying so. Either keep the checkpoint's plan ({keep}), "
                          f"or re-plan the schedule from here with schedule.replan=true (the LR goes on from its "
                          f"current value and falls to its end value at the new horizon, never rising)")
