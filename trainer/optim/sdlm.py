"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, appendix C; Becker & LeCun 1988).

Each parameter ``w_k`` takes its own step, ``w_k -= eta / (mu + h_kk) * dE/dw_k``: ``eta`` is the global rate (the
schedule's), ``h_kk`` an estimate of the loss's second derivative in ``w_k``, and ``mu`` (0.02 in the paper)
bounds the step where the curvature is tiny. The paper re-estimated ``h`` on 500 patterns before each pass
and kept it fixed during the pass; so does ``SDLMCurvature`` here, before every epoch.

``h`` is the exact diagonal of the Gauss-Newton matrix averaged over the patterns, ``diag(J^T H J)``: ``J`` the
Jacobian of the network's outputs in its parameters, ``H`` the loss's Hessian in those outputs, positive
semi-definite (``L L^T``; ``ClassifierModule.curvature_split`` says where the network ends and the loss begins:
LeNet-5's F6 outputs, with the fixed RBF layer and the MAP criterion as the loss, or any other model's
logits). Then ``diag(J^T L L^T J) = sum_m (J^T L_m)^2``: one vector-Jacobian product per output and pattern,
batched with ``torch.func``. (The paper back-propagated second derivatives layer by layer and dropped the
off-diagonal terms on the way, an approximation of this same diagonal.) The network is evaluated in eval
mode for the estimate (no dropout; batch norm on its running statistics): any model can be trained so.
"""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.func import functional_call, vjp, vmap


def gauss_newton_diagonal(model: torch.nn.Module, images: torch.Tensor,
                          output_factor: Callable[[torch.Tensor], torch.Tensor], chunk: int = 50
                          ) -> dict[str, torch.Tensor]:
    """The diagonal of the Gauss-Newton matrix of ``model``'s loss, averaged over ``images``, per trainable
    parameter (by name). ``output_factor(logits)`` gives, per pattern, ``L`` (C x C) with ``L L^T`` the loss's
    Hessian in the logits."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), chunk):
            batch = images[start:start + chunk]
            with torch.no_grad():
                factors = output_factor(model(batch))

            def one(image: torch.Tensor, factor: torch.Tensor) -> dict[str, torch.Tensor]:
                def outputs(p):
                    return functional_call(model, (p, buffers), (image.unsqueeze(0),)).squeeze(0)

                _, pullback = vjp(outputs, params)
                (columns,) = vmap(pullback)(factor.transpose(0, 1))  # J^T L_m for each column m of L
                return {n: g.pow(2).sum(0) for n, g in columns.items()}

            per_pattern = vmap(one)(batch, factors)
            for n in totals:
                totals[n] += per_pattern[n].sum(0)
    finally:
        model.train(was_training)
    return {n: t / len(images) for n, t in totals.items()}


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: ``p -= lr / (mu + h) * grad``, ``h`` set by ``set_curvature``
    (``SDLMCurvature`` does it before every epoch) and kept in the optimizer's state (so in checkpoints: a run
    resumed mid-pass steps with the same ``h``).

    Args:
        lr: the global rate ``eta`` (the paper's pass-wise values: ``schedules.PiecewiseConstantLR``).
        mu: the paper's 0.02.
        samples: the patterns ``h`` is estimated on (the paper's 500).
        weight_decay: L2 added to the gradient (the paper used none).
    """

    def __init__(self, params, lr: float = 5e-4, mu: float = 0.02, samples: int = 500,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or mu <= 0 or samples < 1 or weight_decay < 0:
            raise ValueError(f"SDLM needs lr > 0, mu > 0, samples >= 1 and weight_decay >= 0 (lr={lr}, mu={mu}, "
                             f"samples={samples}, weight_decay={weight_decay})")
        super().__init__(params, {"lr": lr, "mu": mu, "weight_decay": weight_decay})
        self.samples = samples

    @torch.no_grad()
    def set_curvature(self, curvature: dict[torch.Tensor, torch.Tensor]) -> None:
        """``h`` for each parameter (the tensor itself as the key); each step divides by ``mu + h``."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["curvature"] = torch.empty_like(p).copy_(curvature[p])  # the parameter's layout

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            missing = [p for p in params if "curvature" not in self.state[p]]
            if missing:
                raise RuntimeError("SDLM has no curvature estimate: set_curvature() before the first step (the "
                                   "trainer's SDLMCurvature callback does it before every epoch)")
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            scales = [torch.reciprocal(self.state[p]["curvature"] + group["mu"]) for p in params]
            torch._foreach_addcmul_(params, grads, scales, value=-group["lr"])
        return loss


class SDLMCurvature(pl.Callback):
    """Before every epoch (pass) of a run trained with ``SDLM``: ``h`` estimated anew on ``samples`` training
    patterns (the datamodule's ``sample_images``: drawn by seed, epoch and replica, through the training
    augmentation), averaged over the data-parallel processes, and given to the optimizer."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        optimizer = trainer.optimizers[0]
        if not isinstance(optimizer, SDLM):
            return
        sample = getattr(trainer.datamodule, "sample_images", None)
        if sample is None:
            raise RuntimeError("optim=sdlm estimates its curvature on training images: it needs a data module with "
                               "sample_images() (data=digits|mnist|imagenet)")
        images = sample(optimizer.samples, trainer.current_epoch).to(pl_module.device)
        outputs, factor = pl_module.curvature_split()
        diagonal = gauss_newton_diagonal(outputs, images, factor)
        by_param = {}
        for name, p in outputs.named_parameters():  # the module's own parameters, under the split's names
            if name in diagonal:
                h = diagonal[name]
                if trainer.world_size > 1:
                    h = trainer.strategy.reduce(h, reduce_op="mean")
                by_param[p] = h
        optimizer.set_curvature(by_param)
