"""FLOPs per training image and the GPU's dense peak: the two halves of the MFU."""

import torch
from lightning_fabric.utilities.throughput import get_available_flops

from models.summary import training_flops

# H100 SXM's dense peaks (NVIDIA datasheet); the H200 has the same tensor cores and clocks
HOPPER_SXM_DENSE = {torch.float32: 66.9e12, "tfloat32": 494.7e12, torch.bfloat16: 989.4e12, torch.float16: 989.4e12}


def dense_peak_flops(device: torch.device, dtype) -> float | None:
    """The GPU's peak FLOP/s for ``dtype`` without sparsity, from Lightning's table of datasheet figures.

    Two corrections: Lightning's H200 and H100 NVL entries hold the 2:4-sparsity tensor-core
    figures (twice what dense training can reach), and it does not recognise a plain "NVIDIA H200".
    """
    name = torch.cuda.get_device_name(device).lower()
    if "h200" in name:
        return HOPPER_SXM_DENSE.get(dtype)
    peak = get_available_flops(device, dtype)
    if peak and "h100" in name and "nvl" in name and dtype in (torch.bfloat16, torch.float16, "tfloat32"):
        peak /= 2
    return peak


def training_flops_per_image(cfg) -> int:
    """FLOPs of training the config's model on one image (``models.summary.training_flops``)."""
    return training_flops(cfg.model.model_name, cfg.data.num_classes, cfg.model.in_channels, cfg.model.input_size)
