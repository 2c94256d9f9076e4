"""A resume checked against the run it continues: the checkpoint's batch size in mid-epoch, its LR schedule against
this run's (a re-plan, a warm restart, or a refusal that names the honest choices)."""

from typing import Any

from .checkpoints import CheckpointError


def saved_lr(resumed: dict[str, Any]) -> float | None:
    """The learning rate the checkpoint's optimizer would train its next step at."""
    states = resumed.get("optimizer_states") or []
    groups = states[0].get("param_groups", []) if states else []
    return float(groups[0]["lr"]) if groups else None


def epochs_done(resumed: dict[str, Any]) -> int:
    """Whole epochs the checkpoint has trained (one written at an epoch's end counts that epoch)."""
    progress = resumed.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    return int(resumed.get("epoch", 0)) + (1 if progress.get("is_last_batch") else 0)


def mid_epoch(resumed: dict[str, Any]) -> bool:
    """Whether the checkpoint was written in the middle of an epoch (Ctrl-C, every N steps, max_steps)."""
    progress = resumed.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    return bool(progress.get("current", {}).get("processed")) and not progress.get("is_last_batch")


def position(resumed: dict[str, Any]) -> str:
    """Where the checkpoint stands, in the words the stop message used (epochs counted from 1):
    ``after epoch 2`` or ``in epoch 3, after 5 of its batches``."""
    if not mid_epoch(resumed):
        return f"after epoch {epochs_done(resumed)}"
    batches = resumed["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    return f"in epoch {int(resumed.get('epoch', 0)) + 1}, after {batches} of its batches"


def check_batch_size(resumed: dict[str, Any], path, batch_size: int) -> None:
    """A checkpoint written in mid-epoch resumes at its own global batch only.

    Raises:
        CheckpointError: naming the checkpoint's batch size: the epoch's position is a count of its batches,
            so at another size part of the epoch would be skipped (or read twice) without a word.
    """
    record = (resumed.get("callbacks") or {}).get("RunRecord") or {}
    saved = record.get("batch_size")
    if saved is None or saved == batch_size or not mid_epoch(resumed):
        return
    progress = resumed["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    raise CheckpointError(
        f"{path} was written in mid-epoch (after {progress} batches of epoch {int(resumed.get('epoch', 0)) + 1}) at "
        f"data.batch_size={saved}; the epoch's position is a count of its batches, so resumed at "
        f"data.batch_size={batch_size} part of the epoch would never be trained. Resume with "
        f"data.batch_size={saved}, or change the batch size at an epoch's end: resume from a checkpoint written "
        f"there (checkpoints/last.ckpt after the epoch ends) with the new size")


def schedule_changes(resumed: dict[str, Any], scheduler_cfg, replan: bool, restart_lr: float | None = None,
                     max_epochs: int | None = None, path=None) -> dict[str, Any]:
    """What a resumed run changes in the checkpoint's LR schedule: a re-plan (the cosine's ``T_max`` follows
    ``trainer.max_epochs``, so extending a run moves it), or a warm restart at ``restart_lr``.

    Returns:
        ``{"scheduler": settings for the checkpoint's scheduler state, "lr": the learning rate to set or None}``,
        empty when nothing changes.

    Raises:
        CheckpointError: a change without ``replan`` (the learning rate's course would change silently: a
            cosine with a larger ``T_max`` picks up at a higher LR), or a re-plan that cannot change anything
            (the checkpoint's LR is 0, the end of its cosine: the new epochs would train at 0). The messages
            give the choices.
    """
    from omegaconf import OmegaConf

    states = resumed.get("lr_schedulers") or []
    planned = ({k: v for k, v in OmegaConf.to_container(scheduler_cfg, resolve=True).items() if not k.startswith("_")}
               if scheduler_cfg is not None else {})
    cosine = scheduler_cfg is not None and str(scheduler_cfg.get("_target_", "")).endswith("CosineAnnealingLR")
    left = max_epochs - epochs_done(resumed) if max_epochs and max_epochs > 0 else None
    if restart_lr:  # a warm restart (SGDR): the schedule begins again at restart_lr over the epochs left
        restart = {"T_max": max(1, left or 1), "last_epoch": 0, "_step_count": 1, "base_lrs": None,
                   "_last_lr": None} if cosine else {"_last_lr": None}
        return {"scheduler": restart if states else {}, "lr": float(restart_lr)}
    if scheduler_cfg is None or not states:
        return {}
    changed = {k: (states[0][k], v) for k, v in planned.items() if k in states[0] and states[0][k] != v}
    if changed and not replan:
        setting = ", ".join(f"{k}={old} in the checkpoint, {new} now" for k, (old, new) in changed.items())
        keep = " ".join(f"trainer.max_epochs={old}" if k == "T_max" else f"schedule.scheduler.{k}={old}"
                        for k, (old, _) in changed.items())
        raise CheckpointError(
            f"this run's LR schedule differs from the checkpoint's ({setting}); resuming would change the learning "
            f"rate's course without saying so. Either keep the checkpoint's plan ({keep}), or re-plan the schedule "
            f"from here with schedule.replan=true (the LR goes on from its current value and falls to its end "
            f"value at the new horizon, never rising), or restart it with schedule.restart_lr=<lr>")
    if saved_lr(resumed) == 0 and left and left > 0:
        weights = f"model.weights={path}" if path else "model.weights=<checkpoint>"
        ended = f"its cosine schedule ended at epoch {states[0].get('T_max')}" if cosine else "its schedule is at 0"
        raise CheckpointError(
            f"the checkpoint's learning rate is 0 ({ended}), so the {left} epoch(s) left would train at lr 0 and "
            f"change nothing. Either restart the schedule from a learning rate of your choice, "
            f"schedule.restart_lr=<lr> (a cosine then runs from it to 0 over the epochs left: a warm restart), or "
            f"start a new run from these weights: python -m trainer {weights} trainer.max_epochs={left} "
            f"(a new run folder and W&B run)")
    return {"scheduler": {k: new for k, (_, new) in changed.items()}, "lr": None} if changed else {}


def resume_plan(resumed: dict[str, Any], cfg, path) -> dict[str, Any]:
    """Everything a run resumed from ``path`` checks and changes: its batch size against a mid-epoch
    checkpoint's, and its LR schedule against the checkpoint's (``schedule_changes``)."""
    check_batch_size(resumed, path, int(cfg.data.batch_size))
    schedule = cfg.schedule
    return schedule_changes(resumed, schedule.get("scheduler"), bool(schedule.get("replan")),
                            schedule.get("restart_lr"), int(cfg.trainer.max_epochs), path)
