"""An exponential moving average of the weights (EMA; Polyak & Juditsky 1992; torchvision's ``--model-ema``), kept
beside the trained ones: Lightning's ``WeightAveraging`` callback with torch's EMA function, validated beside them.

Lightning's callback validates the average alone (it swaps it in), puts it in a checkpoint's ``state_dict`` and
copies it over the trained weights at the end. Here the trained weights stay the run's everywhere (``state_dict``,
``best.ckpt``, a resume), the average goes into every checkpoint under ``ema_state_dict`` (with the number of
updates, ``ema_averaging_state``), and each validation scores both: ``val/top1_err`` and ``val_ema/top1_err`` (top-5
alike). ``eval_weights=ema`` makes the average the run's result (the papers' comparison, ``best.ckpt``'s score);
``trainer.evaluate`` and ``trainer.export`` take it when asked (``run/checkpoints.py``'s ``checkpoint_weights``).
"""

import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..steps import optimizer_steps_on_this_batch


def adjusted_decay(decay: float, global_batch: int, every_n_steps: int, max_epochs: int) -> float:
    """torchvision's adjustment (references/classification/train.py): the decay was tuned for a global batch and
    update period per epoch; ``1 - decay`` is scaled by ``global_batch x every_n_steps / max_epochs``, at most 1.
    (Its V2 recipe: 1 - 2e-5 x 1024 x 32 / 600 = 0.99891.) ``global_batch`` is the images of an optimizer step: with
    accumulated batches, the effective batch (torchvision accumulates none)."""
    return 1.0 - min(1.0, (1.0 - decay) * global_batch * every_n_steps / max_epochs)


class EMAWeights(WeightAveraging):
    """The average, updated every ``every_n_steps`` optimizer steps; during the first ``warmup_epochs`` each update
    copies the weights (torchvision resets its count there: the warm-up's weights are not averaged in)."""

    def __init__(self, decay: float, every_n_steps: int = 1, warmup_epochs: int = 0) -> None:
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay, self.every_n_steps, self.warmup_epochs = decay, every_n_steps, warmup_epochs

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not optimizer_steps_on_this_batch(trainer):  # (Lightning's test, a global step past the last update's,
            return  # updates again at a resumed run's first accumulated batch: the resumed step was averaged in)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.current_epoch < self.warmup_epochs and self._average_model is not None:
            self._average_model.n_averaged.fill_(0)  # the next update copies

    def on_fit_start(self, trainer, pl_module) -> None:
        """With ``strategy=two_gpu_split`` each process holds one tower from here on, while the average (made in
        ``setup``, and a resumed run's restored into it) is the whole grouped AlexNet's: it becomes this tower's
        half, with its count. Its copy of the tower exchanges activations over the pair, as the trained one does."""
        split = getattr(trainer.strategy, "tower_state_dict", None)
        if self._average_model is None or split is None:
            return
        whole, count = self._average_model.module.state_dict(), self._average_model.n_averaged.clone()
        self._average_model = AveragedModel(model=pl_module, device=self._device or pl_module.device,
                                            use_buffers=self._use_buffers, **self._kwargs)
        self._average_model.module.load_state_dict(split(whole))
        self._average_model.n_averaged.copy_(count)

    # the trained weights stay in place: validated beside the average, kept at the end
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.average is not None:
            self.average.eval()  # scored as the trained weights are: dropout off, the batch norms' running stats

    def on_train_end(self, trainer, pl_module) -> None:
        pass

    @property
    def average(self):
        """The averaged copy of the LightningModule (None before fitting starts)."""
        return self._average_model.module if self._average_model is not None else None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or self.average is None:
            return
        images, labels = batch
        with trainer.precision_plugin.val_step_context(), torch.no_grad():
            self.average.score_into_metrics(images, labels)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.average is None:
            return
        top1, top5 = self.average.errors_and_reset()
        pl_module.log("val_ema/top1_err", top1, sync_dist=True)
        pl_module.log("val_ema/top5_err", top5, sync_dist=True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._average_model is None:
            return
        state = self._average_model.state_dict()
        average = {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
        join = getattr(trainer.strategy, "joined_state_dict", None)  # the split: both towers' halves, as one
        checkpoint["ema_state_dict"] = join(average) if join is not None else average
        checkpoint["ema_averaging_state"] = {k: v for k, v in state.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._average_model is None:
            return
        if "ema_state_dict" in checkpoint:
            self._average_model.load_state_dict({**{f"module.{k}": v for k, v in checkpoint["ema_state_dict"].items()},
                                                 **checkpoint["ema_averaging_state"]})
        else:  # a run that had no EMA: the average starts from the resumed weights at its next update
            self._average_model.module.load_state_dict(checkpoint["state_dict"])
            self._average_model.n_averaged.fill_(0)
