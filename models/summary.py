"""The layer table of the seed slides: one row per layer with its output shape and parameter count."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch dimension: (C, H, W) or (features,)
    kernel_stride_padding: str
    params: int


def _geometry(module: nn.Module) -> str:
    if not hasattr(module, "kernel_size"):
        return ""

    def first(v):
        return v[0] if isinstance(v, tuple) else v

    return f"{first(module.kernel_size)}/{first(module.stride)}/{first(getattr(module, 'padding', 0))}"


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerRow]:
    """Runs one image through ``model`` and records every leaf layer in call order.

    Args:
        model: any ``nn.Module``; its leaves (modules without children) are the rows.
        input_shape: (C, H, W) of one input image.

    Returns:
        The rows; ``params`` counts each layer's own trainable parameters, so the rows add up to
        the model's trainable total.
    """
    rows: list[LayerRow] = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
            params = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
            rows.append(LayerRow(name, type(module).__name__, tuple(output.shape[1:]), _geometry(module), params))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
               if n and not any(True for _ in m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fixed_values(model: nn.Module) -> int:
    """Numbers the model holds that training does not change (buffers such as LeNet's RBF centres),
    not counting BatchNorm statistics and counters, which are running state rather than weights."""
    params = {n for n, _ in model.named_parameters()}
    return sum(t.numel() for n, t in model.state_dict().items()
               if n not in params and not n.rsplit(".", 1)[-1].startswith(("running_", "num_batches_tracked")))


def format_table(rows: list[LayerRow], model: nn.Module) -> str:
    """Formats the rows and ends with ``Total params: N`` (thousands separators)."""
    header = ("layer", "type", "output (C x H x W)", "k/s/p", "params")
    body = [(r.name, r.type, " x ".join(map(str, r.output_shape)), r.kernel_stride_padding, f"{r.params:,}")
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line):
        return "  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))

    lines = [fmt(header), "-" * len(fmt(header)), *map(fmt, body), "-" * len(fmt(header))]
    fixed = fixed_values(model)
    if fixed:
        lines.append(f"Fixed (not trained) values: {fixed:,}")
    lines.append(f"Total params: {trainable_params(model):,}")
    return "\n".join(lines)


def training_flops(name: str, num_classes: int, in_channels: int, input_size: int) -> int:
    """FLOPs of training the registered model ``name`` on one image: 3x the forward pass (the usual convention
    for MFU: the backward pass computes the gradients of both the inputs and the weights, each costing about
    one forward).

    The forward pass is counted by PyTorch's FLOP counter on the meta device (no memory, no compute; LeNet-5:
    651,360, the multiply-adds of its layers, twice). Its backward count is not used: it over-counts grouped
    convolutions (the weight gradient is not divided by the groups), which AlexNet has.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from . import create_model  # the package's: registers the builders

    with torch.device("meta"):
        net = create_model(name, num_classes=num_classes, in_channels=in_channels).eval()  # batch norm on 1 image
        image = torch.empty(1, in_channels, input_size, input_size)
    with FlopCounterMode(display=False) as counter:
        net(image)
    return 3 * counter.get_total_flops()
