"""Learning-rate schedules the papers used and PyTorch lacks."""

import torch


class PiecewiseConstantLR(torch.optim.lr_scheduler.LRScheduler):
    """The learning rate ``values[i]`` for the epochs (passes) before ``until[i]``, the last value after: LeNet-5's
    global rate (LeCun et al. 1998, section III-C) is 0.0005 for passes 1-2, 0.0002 for 3-5, 0.0001 for 6-8,
    0.00005 for 9-12 and 0.00001 after (``values=[5e-4, 2e-4, 1e-4, 5e-5, 1e-5], until=[2, 5, 8, 12]``).
    Stepped once an epoch; the values are absolute (times ``scale``), not factors of the optimizer's lr:
    ``scale`` is the batch for values given per pattern (the linear scaling rule of a step's mean gradient)."""

    def __init__(self, optimizer: torch.optim.Optimizer, values: list[float], until: list[int], scale: float = 1.0,
                 last_epoch: int = -1) -> None:
        if len(values) != len(until) + 1 or list(until) != sorted(until) or scale <= 0:
            raise ValueError(f"PiecewiseConstantLR needs one value more than boundaries, boundaries rising, scale > "
                             f"0: values={list(values)}, until={list(until)}, scale={scale}")
        self.values, self.until = [float(v) * float(scale) for v in values], [int(u) for u in until]
        super().__init__(optimizer, last_epoch)

    def value_at(self, epoch: int) -> float:
        return next((v for v, u in zip(self.values, self.until) if epoch < u), self.values[-1])

    def get_lr(self) -> list[float]:
        return [self.value_at(self.last_epoch) for _ in self.optimizer.param_groups]
