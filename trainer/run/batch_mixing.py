"""MixUp and CutMix on a training batch (Zhang et al. 2018, "mixup"; Yun et al. 2019, "CutMix"), on the device the
batch is on, after DALI: torchvision's ``transforms.v2.MixUp`` and ``CutMix``, one of them drawn for each batch
(``RandomChoice``) when both are on, as torchvision's reference script does. The targets become class
probabilities; the training loss is the cross-entropy against them (``module.py``)."""

import torch

from data_pipelines.sharding import PAD_LABEL


def batch_mixing(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
    """The transform that mixes a batch (images, labels) -> (images, targets), or None when both are off."""
    if not mixup_alpha and not cutmix_alpha:
        return None
    from torchvision.transforms import v2

    choices = ([v2.MixUp(alpha=float(mixup_alpha), num_classes=num_classes)] if mixup_alpha else []) + (
        [v2.CutMix(alpha=float(cutmix_alpha), num_classes=num_classes)] if cutmix_alpha else [])
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)


def step_seed(seed: int, batch: int, replica: int) -> int:
    """The seed of one batch's mixing: the run's seed, the batch's number in the run (``steps.batch_number``: the
    global step, unless batches accumulate) and the data-parallel replica (the two processes of a split pair mix
    alike). Drawn afresh for every batch, the mixing needs no state in the checkpoint: a resumed run mixes its
    batches as the uninterrupted one did."""
    return ((int(seed) * 1_000_003 + int(batch)) * 1_009 + int(replica)) % 2**63


def mix_batch(mixing, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` mixed and their targets as class probabilities (N, classes), with the draws of ``seed`` (torch's
    own random state is left as it was). The entries that pad a replica's shard (``PAD_LABEL``) are left out of
    the mixing and get a target of zeros, which the loss skips."""
    real = labels != PAD_LABEL
    with torch.random.fork_rng(devices=[]):  # torchvision draws its lambda and boxes on the CPU
        torch.manual_seed(seed)
        if bool(real.all()):
            return mixing(images, labels)
        mixed, soft = mixing(images[real], labels[real])
    out, targets = images.clone(), images.new_zeros((len(labels), num_classes), dtype=soft.dtype)
    out[real], targets[real] = mixed, soft
    return out, targets
