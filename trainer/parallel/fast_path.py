"""The GPU fast path: the speed switches a config leaves on ``auto``, set by what the machine has.

On a CUDA GPU, ``auto`` means: bf16 mixed precision where the GPU computes in bf16 (Ampere and
newer; fp16 with loss scaling before it), the channels_last memory format (tensor-core
convolutions read NHWC), cuDNN autotuning unless the run asks to be deterministic, TF32 tensor
cores for the fp32 matrix work that remains, and SGD's fused update (one kernel for all
parameters). On a CPU the switches are off: none of them speeds a CPU up, and bf16 is slower than
fp32 on most. A switch set to ``true``/``false`` (or a precision name) is left as given.
``torch.compile`` stays opt-in (``model.compile=true``): it costs minutes of compilation at start.

Switches: ``trainer.precision``, ``trainer.benchmark``, ``model.channels_last``, ``optim.fused``, ``tf32``.
Also here: Lightning's profiler without its per-call cost.
"""

import contextlib
import copy
import logging

import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.profilers import PassThroughProfiler

log = logging.getLogger(__name__)

AUTO = "auto"


def runs_on_cuda(cfg: DictConfig, accelerator: str | None = None) -> bool:
    """Whether the run's accelerator (``accelerator`` overriding the config's) will be a CUDA GPU."""
    accelerator = accelerator or cfg.trainer.accelerator
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve(cfg: DictConfig, cuda: bool) -> DictConfig:
    """A copy of ``cfg`` with each ``auto`` switch set for a run on a CUDA GPU (``cuda``) or not.

    Also applies the process-wide switch (TF32), so call it once per process before training.
    """
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        if cfg.trainer.get("precision") == AUTO:
            # native bf16 only (Ampere and newer): by default the check also counts emulation, which
            # says yes on a V100 or T4, where bf16 runs far slower than fp16
            bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
            cfg.trainer.precision = "bf16-mixed" if bf16 else "16-mixed" if cuda else "32-true"
        if cfg.trainer.get("benchmark") == AUTO:
            cfg.trainer.benchmark = cuda and not cfg.trainer.get("deterministic")
        if cfg.model.get("channels_last") == AUTO:
            cfg.model.channels_last = cuda
        if cfg.optim.get("fused") == AUTO:
            cfg.optim.fused = cuda
        if cfg.tf32 == AUTO:
            cfg.tf32 = cuda
    # "high": float32 matrix products may use TF32 tensor cores (10-bit mantissa inputs, fp32 sums)
    torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    log.debug("fast path: precision %s, channels_last %s, cudnn benchmark %s, fused SGD %s, TF32 %s",
              cfg.trainer.precision, cfg.model.channels_last, cfg.trainer.benchmark, cfg.optim.get("fused"), cfg.tf32)
    return cfg


_NO_SCOPE = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (which profiles nothing) without its per-call cost.

    Lightning wraps every hook of every callback, the module and the strategy in
    ``trainer.profiler.profile(name)``, some 70 times a step; the default ``PassThroughProfiler`` still
    builds a generator-based context manager each time, 1-1.5 µs. This one returns a shared no-op
    context: 0.03-0.07 ms less host time per step (``python -m trainer.bench --breakdown --tiny-net``).
    Used unless the run asks for a profiler (``+trainer.profiler=simple``).
    """

    def profile(self, action_name: str):
        return _NO_SCOPE
