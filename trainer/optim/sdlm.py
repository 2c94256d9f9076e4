"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, appendix C; Becker & LeCun 1988).

Each parameter ``w_k`` takes its own step, ``w_k -= eta / (mu + h_kk) * dE/dw_k``: ``eta`` is the global rate (the
schedule's), ``h_kk`` an estimate of the loss's second derivative in ``w_k``, and ``mu`` (0.02 in the paper)
bounds the step where the curvature is tiny. The paper re-estimated ``h`` on 500 patterns before each pass
and kept it fixed during the pass; so does ``SDLMCurvature`` here, before every epoch.

``h`` is one of the two estimates in ``curvature.py`` (``optim.curvature``): the paper's, which back-propagates
second derivatives connection by connection (``per_connection``, the default), or the exact Gauss-Newton
diagonal (``gauss_newton``). They differ most for a convolution's shared weights (docs/reproducing.md measures
both on LeNet-5).
"""

import pytorch_lightning as pl
import torch

from .curvature import gauss_newton_diagonal, per_connection_diagonal

ESTIMATES = {"per_connection": per_connection_diagonal, "gauss_newton": gauss_newton_diagonal}


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: ``p -= lr / (mu + h) * grad``, ``h`` set by ``set_curvature``
    (``SDLMCurvature`` does it before every epoch) and kept in the optimizer's state (so in checkpoints: a run
    resumed mid-pass steps with the same ``h``).

    Args:
        lr: the global rate ``eta`` (the paper's pass-wise values: ``schedules.PiecewiseConstantLR``).
        mu: the paper's 0.02.
        samples: the patterns ``h`` is estimated on (the paper's 500).
        curvature: which estimate of ``h``: ``per_connection`` (the paper's) or ``gauss_newton`` (exact).
        weight_decay: L2 added to the gradient (the paper used none).
    """

    def __init__(self, params, lr: float = 5e-4, mu: float = 0.02, samples: int = 500,
                 weight_decay: float = 0.0, curvature: str = "per_connection") -> None:
        if curvature not in ESTIMATES:
            raise ValueError(f"optim.curvature={curvature} is not an estimate SDLM knows: {' or '.join(ESTIMATES)}")
        if lr <= 0 or mu <= 0 or samples < 1 or weight_decay < 0:
            raise ValueError(f"SDLM needs lr > 0, mu > 0, samples >= 1 and weight_decay >= 0 (lr={lr}, mu={mu}, "
                             f"samples={samples}, weight_decay={weight_decay})")
        super().__init__(params, {"lr": lr, "mu": mu, "weight_decay": weight_decay})
        self.samples, self.curvature = samples, curvature

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
        diagonal = ESTIMATES[optimizer.curvature](outputs, images, factor)
        by_param = {}
        for name, p in outputs.named_parameters():  # the module's own parameters, under the split's names
            if name in diagonal:
                h = diagonal[name]
                if trainer.world_size > 1:
                    h = trainer.strategy.reduce(h, reduce_op="mean")
                by_param[p] = h
        optimizer.set_curvature(by_param)
