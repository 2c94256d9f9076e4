"""FLOPs per training image and the GPU's dense peak: the two halves of the MFU."""

import torch
from lightning_fabric.utilities.throughput import get_available_flops, measure_flops

from models import create_model

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
    """FLOPs of training on one image: 3x the forward pass (the usual convention for MFU: the backward
    pass computes the gradients of both the inputs and the weights, each costing about one forward).

    The forward pass is counted by PyTorch's FLOP counter on the meta device (LeNet-5: 651,360; the
    multiply-adds of its layers, twice). Its backward count is not used: it over-counts grouped
    convolutions (the weight gradient is not divided by the groups), which AlexNet has.
    """
    with torch.device("meta"):
        net = create_model(cfg.model.model_name, num_classes=cfg.data.num_classes, in_channels=cfg.model.in_channels)
        image = torch.empty(1, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    return 3 * measure_flops(net, lambda: net(image))
