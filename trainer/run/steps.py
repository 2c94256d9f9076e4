"""Where a step stands in Lightning's loop: the logging steps (the only ones that may read the device) and an
epoch's ends. Shared by the callbacks, the checkpoints and the fast path."""


def epoch_number(trainer) -> int:
    """The epoch in progress (or just ended) counted from 1, as the console, W&B's ``epoch``, the report and the
    stop and resume messages count them; Lightning's ``current_epoch`` counts from 0."""
    return trainer.current_epoch + 1


def optimizer_steps_on_this_batch(trainer) -> bool:
    """Whether the optimizer steps at the end of this training batch (true before its step, in
    ``on_train_batch_start``, and after, in ``on_train_batch_end`` and the validation that follows it): every batch,
    or with ``trainer.accumulate_grad_batches=k`` the k-th of each window and an epoch's last. Lightning's own rule
    (``TrainingEpochLoop._should_accumulate``), asked rather than copied so that the two cannot disagree."""
    return trainer.accumulate_grad_batches == 1 or not trainer.fit_loop.epoch_loop._should_accumulate()


def batch_number(trainer) -> int:
    """This training batch's number in the run, from 0, while it trains: the optimizer steps before it times the
    batches a step takes, plus its place in its step's window (the global step, without accumulation). A resumed
    run numbers its batches as the uninterrupted one did: both counts are in the checkpoint."""
    batches = trainer.accumulate_grad_batches
    return trainer.global_step * batches + (trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1) % batches


def is_logging_step(trainer) -> bool:
    """After the optimizer step of this batch: the steps on which the logger writes (and may read the device);
    never a batch whose gradient is only accumulated."""
    return trainer.global_step % trainer.log_every_n_steps == 0 and optimizer_steps_on_this_batch(trainer)


def logs_after_this_step(trainer) -> bool:
    """Before the optimizer step of this batch (``training_step``, ``on_train_batch_start``): whether the
    logger writes after it. Lightning writes when ``(optimizer steps so far + 1) % log_every_n_steps == 0``
    (``_LoggerConnector.should_update_logs``), at a batch that steps."""
    return (trainer.global_step + 1) % trainer.log_every_n_steps == 0 and optimizer_steps_on_this_batch(trainer)


def at_epochs_last_batch(trainer) -> bool:
    """Whether the batch that just trained was its epoch's last (the epoch's validation has not run yet)."""
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def stops_mid_epoch(trainer) -> bool:
    """Whether ``trainer.max_steps`` ends the run at this step, before its epoch's last batch."""
    return 0 < trainer.max_steps <= trainer.global_step and not at_epochs_last_batch(trainer)
