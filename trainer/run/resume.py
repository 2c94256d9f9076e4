"""A resume checked against the run it continues: the checkpoint's batch size, seed and replicas in mid-epoch, its
optimizer's parameter groups, its learning rate and LR schedule against this run's (a new rate, a re-plan, a warm
restart, or a refusal that names the honest choices)."""

import math
from typing import Any

from .. import target_is
from .checkpoints import CheckpointError


def _first_group(resumed: dict[str, Any]) -> dict:
    states = resumed.get("optimizer_states") or []
    groups = states[0].get("param_groups", []) if states else []
    return groups[0] if groups else {}


def main_schedule_state(state: dict) -> dict:
    """The state of the schedule a run follows after its warm-up: inside a ``SequentialLR`` (warm-up, then the
    schedule: ``run/module.py``) its last part; else the state itself."""
    return state["_schedulers"][-1] if state.get("_schedulers") else state


def saved_warmup(state: dict) -> int:
    """The warm-up epochs of a checkpoint's schedule state (0: none)."""
    if state.get("_schedulers"):
        return int(state["_milestones"][0])
    return int(state.get("total_iters", 0)) if "start_factor" in state else 0  # a warm-up alone (LinearLR)


def _fit_loop(resumed: dict[str, Any]) -> dict:
    return resumed.get("loops", {}).get("fit_loop", {})


def saved_lr(resumed: dict[str, Any]) -> float | None:
    """The learning rate the checkpoint's optimizer would train its next step at."""
    group = _first_group(resumed)
    return float(group["lr"]) if group else None


def saved_base_lr(resumed: dict[str, Any]) -> float | None:
    """The rate the checkpoint's run was configured with (its schedule's base; the rate itself without one)."""
    group = _first_group(resumed)
    return float(group.get("initial_lr", group["lr"])) if group else None


def batches_per_step(cfg) -> int:
    """The batches whose gradients one optimizer step sums (``trainer.accumulate_grad_batches``)."""
    return int(cfg.trainer.get("accumulate_grad_batches") or 1)


def effective_batch(cfg) -> int:
    """The images of one optimizer step: the global batch times the batches a step accumulates."""
    return int(cfg.data.batch_size) * batches_per_step(cfg)


def configured_lr(cfg) -> float:
    """The rate this run's optimizer starts at: ``optim.lr``, scaled linearly to the effective batch (the global
    batch times the batches a step accumulates) when the config names the batch it was set for
    (``optim.batch_size_for_lr``)."""
    reference = cfg.optim.get("batch_size_for_lr")
    return float(cfg.optim.lr) * (effective_batch(cfg) / reference if reference else 1.0)


def epochs_done(resumed: dict[str, Any]) -> int:
    """Whole epochs the checkpoint has trained (one written at an epoch's end counts that epoch)."""
    progress = _fit_loop(resumed).get("epoch_loop.batch_progress", {})
    return int(resumed.get("epoch", 0)) + (1 if progress.get("is_last_batch") else 0)


def mid_epoch(resumed: dict[str, Any]) -> bool:
    """Whether the checkpoint was written in the middle of an epoch (Ctrl-C, every N steps, max_steps)."""
    progress = _fit_loop(resumed).get("epoch_loop.batch_progress", {})
    return bool(progress.get("current", {}).get("processed")) and not progress.get("is_last_batch")


def validation_to_redo(resumed: dict[str, Any]) -> bool:
    """Whether the checkpoint was written in mid-validation (``StopOnSignal``): its epoch's validation runs again."""
    progress = _fit_loop(resumed).get("epoch_loop.val_loop.batch_progress", {})
    total = progress.get("total", {})
    return total.get("started") == 1 and total.get("processed") == 0 and not progress.get("is_last_batch")


def position(resumed: dict[str, Any]) -> str:
    """Where the checkpoint stands, in the words the stop message used (epochs counted from 1):
    ``after epoch 2``, ``in epoch 3, after 5 of its batches`` or ``in epoch 2, after its training (its
    validation runs again)``."""
    if validation_to_redo(resumed):
        return f"in epoch {int(resumed.get('epoch', 0)) + 1}, after its training (its validation runs again)"
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


def check_data_order(resumed: dict[str, Any], path, seed: int | None, replicas: int | None) -> None:
    """A checkpoint written in mid-epoch resumes with its own seed and number of data-parallel replicas only
    (None: not checked here; the seed is checked before the start, the replicas once the trainer exists).

    Raises:
        CheckpointError: the epoch's order is drawn from the seed and split among the replicas; resumed with
            another, the position (a count of batches) would fall in another order: some images of the epoch
            trained twice and others never.
    """
    if not mid_epoch(resumed):
        return
    loaders = _fit_loop(resumed).get("state_dict", {}).get("combined_loader") or [{}]
    saved = loaders[0] if isinstance(loaders[0], dict) else {}
    differs = [(key, saved[key], now) for key, now in (("seed", seed), ("replicas", replicas))
               if now is not None and saved.get(key) is not None and saved[key] != now]
    if differs:
        key, then, now = differs[0]
        setting = "seed" if key == "seed" else "the number of data-parallel processes (trainer.devices x nodes)"
        fix = f"seed={then}" if key == "seed" else f"{then} data-parallel process(es)"
        raise CheckpointError(
            f"{path} was written in mid-epoch ({position(resumed)}) with {setting} {then}, and this run has {now}; "
            f"the epoch's order is drawn from the seed and split among the processes, so the rest of the epoch "
            f"would read other images: some trained twice in this epoch, others never. Resume with {fix}, or "
            f"change it at an epoch's end: resume from a checkpoint written there (checkpoints/last.ckpt after the "
            f"epoch ends)")


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
    from torch.optim.lr_scheduler import CosineAnnealingLR

    states = resumed.get("lr_schedulers") or []
    planned = ({k: v for k, v in OmegaConf.to_container(scheduler_cfg, resolve=True).items() if not k.startswith("_")}
               if scheduler_cfg is not None else {})
    cosine = target_is(scheduler_cfg, CosineAnnealingLR)
    left = max_epochs - epochs_done(resumed) if max_epochs and max_epochs > 0 else None
    if restart_lr:  # a warm restart (SGDR): the schedule begins again at restart_lr over the epochs left
        restart = {"T_max": max(1, left or 1), "last_epoch": 0, "_step_count": 1, "base_lrs": None,
                   "_last_lr": None} if cosine else {"_last_lr": None}
        return {"scheduler": restart if states else {}, "lr": float(restart_lr)}
    if scheduler_cfg is None or not states:
        return {}
    main = main_schedule_state(states[0])
    changed = {k: (main[k], v) for k, v in planned.items() if k in main and main[k] != v}
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
        ended = f"its cosine schedule ended at epoch {main.get('T_max')}" if cosine else "its schedule is at 0"
        raise CheckpointError(
            f"the checkpoint's learning rate is 0 ({ended}), so the {left} epoch(s) left would train at lr 0 and "
            f"change nothing. Either restart the schedule from a learning rate of your choice, "
            f"schedule.restart_lr=<lr> (a cosine then runs from it to 0 over the epochs left: a warm restart), or "
            f"start a new run from these weights: python -m trainer {weights} trainer.max_epochs={left} "
            f"(a new run folder and W&B run)")
    return {"scheduler": {k: new for k, (_, new) in changed.items()}, "lr": None} if changed else {}


def check_parameter_groups(resumed: dict[str, Any], path, norm_weight_decay, bias_weight_decay) -> None:
    """The checkpoint's optimizer grouped its parameters as this run's settings would (``optim/param_groups.py``).

    Raises:
        CheckpointError: the groups differ: the optimizer's state (momentum) could not be matched to them.
    """
    from ..optim.param_groups import group_count

    states = resumed.get("optimizer_states") or []
    saved = len(states[0].get("param_groups", [])) if states else None
    wanted = group_count(norm_weight_decay, bias_weight_decay)
    if saved is None or saved == wanted:
        return
    now = f"optim.norm_weight_decay={norm_weight_decay} optim.bias_weight_decay={bias_weight_decay}".replace("None",
                                                                                                          "null")
    raise CheckpointError(
        f"{path} was trained with its parameters in {saved} weight-decay group(s), and this run's settings ({now}) "
        f"make {wanted}: the optimizer's state could not be matched to them. Resume with the checkpoint's "
        f"optim.norm_weight_decay and optim.bias_weight_decay (its run folder's .hydra/config.yaml has them), or "
        f"start a new run from its weights: model.weights={path}")


def check_warmup(resumed: dict[str, Any], path, warmup_epochs: int) -> None:
    """The checkpoint's schedule had this run's warm-up (``schedule.warmup_epochs``).

    Raises:
        CheckpointError: another warm-up: the schedule's state (where the warm-up hands over) would not fit it.
    """
    states = resumed.get("lr_schedulers") or []
    saved = saved_warmup(states[0]) if states else warmup_epochs
    if saved != warmup_epochs:
        raise CheckpointError(
            f"{path} was trained with schedule.warmup_epochs={saved}, and this run has {warmup_epochs}: its LR "
            f"schedule's state holds where the warm-up ends. Resume with schedule.warmup_epochs={saved}, or start "
            f"a new run from its weights: model.weights={path}")


def resume_plan(resumed: dict[str, Any], cfg, path) -> dict[str, Any]:
    """Everything a run resumed from ``path`` checks and changes before it starts: its batch size and seed
    against a mid-epoch checkpoint's (the replicas are checked once the trainer exists: ``check_data_order``), its
    LR schedule against the checkpoint's (``schedule_changes``), and the rate: an ``optim.lr`` other than the
    checkpoint's is the rate used from here, its schedule scaled to it (``lr_scale``; the NaN guard's advice is
    such a resume)."""
    check_batch_size(resumed, path, int(cfg.data.batch_size))
    check_data_order(resumed, path, int(cfg.data.get("seed", cfg.seed)), None)
    check_parameter_groups(resumed, path, cfg.optim.get("norm_weight_decay"), cfg.optim.get("bias_weight_decay"))
    check_warmup(resumed, path, int(cfg.schedule.get("warmup_epochs") or 0))
    schedule = cfg.schedule
    plan = schedule_changes(resumed, schedule.get("scheduler"), bool(schedule.get("replan")),
                            schedule.get("restart_lr"), int(cfg.trainer.max_epochs), path)
    given, saved = configured_lr(cfg), saved_base_lr(resumed)
    if not schedule.get("restart_lr") and saved and not math.isclose(given, saved, rel_tol=1e-6):
        plan = {**plan, "lr_scale": given / saved, "lr_given": given, "lr_saved": saved}
    return plan

