"""The LightningModule that wraps any registered model for image classification."""

from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LinearLR, SequentialLR
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from data_pipelines.sharding import PAD_LABEL, data_parallel_rank_and_size
from models import create_model
from models.catalogue import CATALOGUE
from models.dense import fully_convolutional
from models.weights import load_weights

from ..optim import SDLM, SDLMCurvature
from ..optim.map_loss import map_loss, output_hessian_factor, rbf_hessian_factor
from ..optim.param_groups import parameter_groups
from .batch_mixing import batch_mixing, mix_batch, step_seed
from .checkpoints import compiled_names, plain_names
from .loss_choice import loss_refusal
from .resume import main_schedule_state
from .steps import batch_number, epoch_number


class _Features(torch.nn.Module):
    """A classifier module's network up to its RBF layer (F6's outputs), sharing its parameters."""

    def __init__(self, module: "ClassifierModule") -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.module.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module.net.features(x)


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Gives each per-parameter state tensor (SGD's momentum) its parameter's memory format.

    A checkpoint written in one layout (NCHW, on a CPU) resumes in another (channels_last on a GPU):
    ``load_state_dict`` casts the state to the parameter's device and dtype but keeps its strides,
    and the fused and foreach kernels expect state and parameter laid out alike.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param).copy_(value)  # empty_like keeps the parameter's strides


def _rename_weights(checkpoint: dict, names) -> None:
    """The checkpoint's weights and their average (where it has one) under ``names`` (``plain_names`` or
    ``compiled_names``), in place."""
    for key in ("state_dict", "ema_state_dict"):
        if key in checkpoint:
            checkpoint[key] = names(checkpoint[key])


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of ``models.create_model(model_name)`` with top-1/top-5 error in percent.

    Args:
        model_name: a name from ``models.list_models()``.
        num_classes: output classes.
        input_size: side of the square input (the model's design size: 224, or 32 for LeNet-5).
        in_channels: input channels (1 for LeNet-5 on grayscale).
        optimizer: a partial optimizer (Hydra ``_partial_: true``), completed with the parameters.
        scheduler: a partial LR scheduler or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        scheduler_monitor: metric a ReduceLROnPlateau schedule watches.
        channels_last: NHWC memory format (faster convolutions on tensor-core GPUs).
        compile: wrap the network with ``torch.compile``.
        dropout: drop probability of the fc layers of the models that have dropout (AlexNet, ZFNet);
            ``None`` keeps the builder's (the paper's 0.5).
        weights: start from these weights (``models.weights.load_weights``): a state dict or checkpoint
            file, or ``torchvision`` (its published ImageNet weights); ``None``: the builder's initialisation.
        loss: ``cross_entropy``, or ``map``: LeNet-5's MAP criterion on its RBF outputs (equation 9 of the
            paper, ``trainer/optim/map_loss.py``), with the constant ``map_j``. ``val/loss`` is the
            cross-entropy of the evaluated class probabilities whatever the training loss.
        mixup_alpha, cutmix_alpha: MixUp and CutMix of the training batches, with these Beta(alpha, alpha)
            parameters (``run/batch_mixing.py``); both on: one of them for each batch; 0: off.
        seed: the run's seed, from which each step's mixing is drawn.
        norm_weight_decay, bias_weight_decay: the weight decay of the normalisation layers' parameters, and of the
            other layers' biases (``trainer/optim/param_groups.py``); ``None``: the optimizer's, as for every weight.
        label_smoothing: the training cross-entropy's target is ``1 - e`` on the label plus ``e / classes`` on
            every class (Szegedy et al. 2016, section 7; torch's ``cross_entropy(label_smoothing=e)``); 0: none.
        warmup_epochs: the learning rate rises linearly over these first epochs from ``warmup_factor`` times its
            value, then ``scheduler`` runs from the full rate (Goyal et al. 2017's gradual warm-up; torchvision's
            ``--lr-warmup-epochs``, ``LinearLR`` then ``SequentialLR``); 0: none.
        schedule_replan: a resumed run's change of its schedule (``run/resume.py``'s ``resume_plan``), applied to
            the checkpoint's scheduler and optimizer states as they are loaded; ``None`` for none.
    """

    def __init__(self, model_name: str, num_classes: int, input_size: int = 224, in_channels: int = 3,
                 optimizer: partial | None = None, scheduler: partial | None = None,
                 scheduler_interval: str = "epoch", scheduler_monitor: str = "val/top1_err",
                 channels_last: bool = False, compile: bool = False, dropout: float | None = None,
                 weights: str | None = None, loss: str = "cross_entropy", map_j: float | None = None,
                 label_smoothing: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, seed: int = 0,
                 norm_weight_decay: float | None = None,
                 bias_weight_decay: float | None = None, warmup_epochs: int = 0, warmup_factor: float = 0.01,
                 schedule_replan: dict | None = None) -> None:
        super().__init__()
        # Only plain values go into the checkpoint, so it loads with torch.load(weights_only=True).
        self.save_hyperparameters("model_name", "num_classes", "input_size", "in_channels", "channels_last")
        extra = {} if dropout is None else {"dropout": dropout}
        self.net = create_model(model_name, num_classes=num_classes, in_channels=in_channels, **extra)
        if weights:
            load_weights(self.net, model_name, weights)
        mixes = bool(mixup_alpha or cutmix_alpha)
        if refusal := loss_refusal(loss, model_name, map_j, label_smoothing, mixes):  # the config check's rule
            raise ValueError(refusal)
        self.rbf_output = CATALOGUE[model_name].rbf_output  # LeNet-5's fixed RBF layer (net.output)
        self.loss_name, self.map_j, self.label_smoothing = loss, map_j, float(label_smoothing)
        self.num_classes, self.seed = num_classes, seed
        self.mixing = batch_mixing(num_classes, mixup_alpha, cutmix_alpha)
        self.example_input_array = torch.zeros(2, in_channels, input_size, input_size)  # shapes in the summary
        self.optimizer_factory = optimizer or partial(torch.optim.SGD, lr=0.01, momentum=0.9)
        self.scheduler_factory = scheduler
        self.norm_weight_decay, self.bias_weight_decay = norm_weight_decay, bias_weight_decay
        self.warmup_epochs, self.warmup_factor = int(warmup_epochs), float(warmup_factor)
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        self.schedule_replan = schedule_replan or {}  # a resume's change of schedule (run/resume.py's resume_plan)
        self.channels_last, self.compile = channels_last, compile
        top5 = min(5, num_classes)
        # PAD_LABEL marks the entries that pad a replica's shard: never counted
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro", ignore_index=PAD_LABEL)
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro", ignore_index=PAD_LABEL)
        self.val_images = SumMetric()  # the images a validation covered: all of the set, or a part (limit_val_batches)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def configure_model(self) -> None:
        if self.compile and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @staticmethod
    def _loss(logits: torch.Tensor, labels: torch.Tensor, j: float | None = None,
              smoothing: float = 0.0) -> torch.Tensor:
        # Mean over the real samples: the entries that pad a replica's shard to equal length carry
        # PAD_LABEL (data_pipelines.sharding); a batch of padding alone gives 0, not NaN.
        if j is None:
            total = F.cross_entropy(logits, labels, ignore_index=PAD_LABEL, reduction="sum", label_smoothing=smoothing)
        else:
            total = map_loss(logits, labels, j, ignore_index=PAD_LABEL, reduction="sum")
        return total / (labels != PAD_LABEL).sum().clamp_min(1)

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss against ``labels``, or against mixed targets: class probabilities (N, classes), a row
        of zeros for an entry that pads the shard (``batch_mixing.mix_batch``)."""
        if self.loss_name == "map":
            return self._loss(logits, labels, self.map_j)
        if labels.dim() == 2:
            per_entry = F.cross_entropy(logits, labels, reduction="none", label_smoothing=self.label_smoothing)
            real = labels.sum(-1) > 0
            return (per_entry * real).sum() / real.sum().clamp_min(1)
        return self._loss(logits, labels, smoothing=self.label_smoothing)

    def curvature_split(self) -> tuple[torch.nn.Module, callable]:
        """Where optim=sdlm's Gauss-Newton matrix splits the network from the loss: the module giving the
        outputs, and ``factor(outputs)`` with ``L L^T`` the loss's Hessian in them. For LeNet-5, F6's outputs
        with the fixed RBF layer on the loss's side (its second derivative keeps the curvature alive where the
        MAP loss is linear in the distances: ``map_loss.rbf_hessian_factor``); for any other model, the logits."""
        j = self.map_j if self.loss_name == "map" else None
        if self.rbf_output:
            return _Features(self), lambda x: rbf_hessian_factor(x, self.net.output.centres, j)
        return self, lambda logits: output_hessian_factor(logits, j)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.mixing is not None:  # MixUp / CutMix on the batch's device (run/batch_mixing.py): labels -> targets
            replica, _ = data_parallel_rank_and_size(self.trainer)
            images, labels = mix_batch(self.mixing, images, labels, self.num_classes,
                                       step_seed(self.seed, batch_number(self.trainer), replica))
        # Nothing logged here: callbacks.StepMetrics sends the loss (a tensor until then), the learning
        # rate and the throughput to the loggers every log_every_n_steps, and the progress bar shows it.
        # (LightningModule.log on every step cost 0.35 ms of host time a step, and prog_bar=True a host
        # read per step.)
        return self.training_loss(self(images), labels)

    def evaluation_scores(self, images: torch.Tensor | list) -> torch.Tensor:
        """Log-probabilities; for a stack of views per image (N, V, C, H, W), of the averaged softmax
        (AlexNet section 4.1: the ten patches' softmax outputs are averaged); for the dense protocols (a list of
        each image's whole-image views, one per test scale), ``dense_scores``'s."""
        if isinstance(images, list):
            return torch.stack([self.dense_scores(views) for views in images]).log()
        if images.dim() == 5:
            n, views = images.shape[:2]
            return self(images.flatten(0, 1)).softmax(-1).view(n, views, -1).mean(1).log()
        return self(images).log_softmax(-1)

    def dense_scores(self, views) -> torch.Tensor:
        """Dense evaluation of one image (Simonyan & Zisserman 2014, section 3.2): at each test scale the network,
        fully convolutional (``models.dense``), gives a class score map, averaged over its positions; the
        softmax posteriors of the image and of its mirror image are averaged, and those of every scale (the
        multi-scale protocol; He et al. 2015, section 3.4). Returns the class probabilities."""
        dense = fully_convolutional(self.net)
        posteriors = []
        for view in views:
            both = torch.stack([view, view.flip(-1)])
            if self.channels_last:
                both = both.contiguous(memory_format=torch.channels_last)
            posteriors.append(dense(both).mean((2, 3)).softmax(-1))
        return torch.cat(posteriors).mean(0)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        scores = self.evaluation_scores(images)
        self.log("val/loss", self._loss(scores, labels), on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.val_top1.update(scores, labels)
        self.val_top5.update(scores, labels)
        self.val_images.update((labels != PAD_LABEL).sum())

    def score_into_metrics(self, images, labels) -> None:
        """Scores a validation batch into the top-1/top-5 metrics only (what the EMA callback asks of the average)."""
        scores = self.evaluation_scores(images)
        self.val_top1.update(scores, labels)
        self.val_top5.update(scores, labels)

    def errors_and_reset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-1 and top-5 errors (%) of what ``score_into_metrics`` scored, over every process; then reset."""
        errors = (100.0 * (1.0 - self.val_top1.compute()), 100.0 * (1.0 - self.val_top5.compute()))
        self.val_top1.reset()
        self.val_top5.reset()
        return errors

    def on_validation_epoch_end(self) -> None:
        # compute() syncs the counts over processes, so every rank holds the same global error
        # (sync_dist then averages equal values: it only tells Lightning the value is global).
        self.log("val/top1_err", 100.0 * (1.0 - self.val_top1.compute()), prog_bar=True, sync_dist=True)
        self.log("val/top5_err", 100.0 * (1.0 - self.val_top5.compute()), prog_bar=True, sync_dist=True)
        # the images scored, against the validation set's: a validation cut short (limit_val_batches) says so
        # wherever its result is shown (the processes of a split pair read the same images: counted once)
        _, replicas = data_parallel_rank_and_size(self.trainer)
        self.log("val/images", self.val_images.compute() * replicas / self.trainer.world_size, sync_dist=True)
        total = getattr(self.trainer.val_dataloaders, "num_samples", None)
        if total:
            self.log("val/set_images", float(total), sync_dist=True)
        # Lightning adds ``epoch`` counted from 0 to what it logs unless it is there: counted from 1, as everywhere
        self.log("epoch", float(epoch_number(self.trainer)), sync_dist=True)
        for metric in (self.val_top1, self.val_top5, self.val_images):
            metric.reset()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # ZFNet's filter renormalisation (Zeiler & Fergus section 3) runs after every update.
        renormalize = getattr(self.net, "renormalize_filters", None)
        if renormalize is not None:
            renormalize()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the network's own names, compiled or not (torch.compile's wrapper adds _orig_mod): every command loads it
        _rename_weights(checkpoint, plain_names)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """The weights (and their average) under this run's names: ``_orig_mod`` when its network is compiled.

        A resumed run that re-plans or restarts its schedule (``resume.schedule_changes``): the
        checkpoint's scheduler state takes the new plan (e.g. a cosine's ``T_max``) and, for a warm restart,
        the optimizer the new learning rate, before Lightning restores them. PyTorch's schedulers step from
        the current LR, so a longer cosine goes on falling from where it is; a restarted one begins again."""
        # (the average's copy of the network is compiled alike)
        _rename_weights(checkpoint, compiled_names if isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule)
                        else plain_names)
        changes = self.schedule_replan
        lr, scale, planned = changes.get("lr"), changes.get("lr_scale"), changes.get("scheduler", {})
        groups = len(((checkpoint.get("optimizer_states") or [{}])[0]).get("param_groups") or [0])
        for top in checkpoint.get("lr_schedulers") or []:
            main = main_schedule_state(top)  # after a warm-up: the schedule it hands over to
            main.update(planned)
            for state in (top, *top.get("_schedulers", [])):
                for key in ("base_lrs", "_last_lr"):
                    if lr is not None and key in planned and (state is main or state is top):
                        state[key] = [lr] * groups  # a restart: every group begins at the new lr
                    elif scale and state.get(key):  # a new optim.lr: the schedule's course, scaled to it
                        state[key] = [value * scale for value in state[key]]
        for optimizer in checkpoint.get("optimizer_states") or []:
            for group in optimizer.get("param_groups", []):
                if lr is not None:
                    group["lr"] = group["initial_lr"] = lr
                elif scale:
                    group["lr"] *= scale
                    if "initial_lr" in group:
                        group["initial_lr"] *= scale
        states = checkpoint.get("optimizer_states") or [{}]
        groups = states[0].get("param_groups") or [{}]
        self.resumed_lr = groups[0].get("lr")  # the rate the optimizer trains on at (the opening block says it)

    def configure_callbacks(self) -> list:
        """What the optimizer needs beside the step: SDLM its curvature, renewed before every pass."""
        factory = self.optimizer_factory
        built = factory.func if isinstance(factory, partial) else factory
        return [SDLMCurvature()] if isinstance(built, type) and issubclass(built, SDLM) else []

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=parameter_groups(self, self.norm_weight_decay,
                                                                   self.bias_weight_decay))
        optimizer.register_load_state_dict_post_hook(match_parameter_layouts)
        scheduler = self.scheduler_factory(optimizer=optimizer) if self.scheduler_factory else None
        if self.warmup_epochs:
            warmup = LinearLR(optimizer, start_factor=self.warmup_factor, total_iters=self.warmup_epochs)
            scheduler = SequentialLR(optimizer, [warmup, scheduler], [self.warmup_epochs]) if scheduler else warmup
        if scheduler is None:
            return optimizer
        config = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": config}
