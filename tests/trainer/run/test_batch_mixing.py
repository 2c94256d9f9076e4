"""MixUp and CutMix of a training batch: targets that sum to one and mix the right pairs, padding left out, the
same draws from the same seed, the loss against mixed targets, the refusal with the MAP criterion."""

import pytest
import torch
import torch.nn.functional as F

from data_pipelines.sharding import PAD_LABEL
from helpers import make_cfg
from trainer.config_check import ConfigValueError, check_values
from trainer.run.batch_mixing import batch_mixing, mix_batch, step_seed
from trainer.run.module import ClassifierModule


def batch(n: int = 6, classes: int = 10):
    """Images each of one constant value (its index + 1), so that a mixed pixel tells which images it came from."""
    images = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    return images, torch.arange(n) % classes


def test_mixup_mixes_each_image_with_the_one_before_by_the_targets_weight():
    images, labels = batch()
    mixed, targets = mix_batch(batch_mixing(10, mixup_alpha=0.2), images, labels, 10, seed=3)
    assert targets.shape == (6, 10) and torch.allclose(targets.sum(-1), torch.ones(6))
    lam = targets[0, labels[0]]  # one lambda for the batch; image i is mixed with image i - 1 (torch.roll)
    assert 0 < lam < 1
    for i in range(6):
        j = (i - 1) % 6
        assert torch.allclose(targets[i, labels[i]], lam) and torch.allclose(targets[i, labels[j]], 1 - lam)
        assert torch.allclose(mixed[i], lam * images[i] + (1 - lam) * images[j])


def test_cutmix_pastes_a_box_of_the_image_before_and_weighs_the_targets_by_its_area():
    images, labels = batch()
    mixed, targets = mix_batch(batch_mixing(10, cutmix_alpha=1.0), images, labels, 10, seed=5)
    for i in range(6):
        j = (i - 1) % 6
        own = (mixed[i] == images[i, 0, 0, 0]).float().mean()
        assert ((mixed[i] == images[i, 0, 0, 0]) | (mixed[i] == images[j, 0, 0, 0])).all()  # whole pixels, no blend
        assert torch.allclose(targets[i, labels[i]], own) and torch.allclose(targets[i].sum(), torch.tensor(1.0))
    assert (mixed != images).any()  # a box was pasted


def test_the_same_seed_mixes_alike_and_leaves_torchs_random_state_alone():
    images, labels = batch()
    both = batch_mixing(10, mixup_alpha=0.2, cutmix_alpha=1.0)
    state = torch.get_rng_state()
    a = mix_batch(both, images, labels, 10, step_seed(42, 7, 0))
    b = mix_batch(both, images, labels, 10, step_seed(42, 7, 0))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [mix_batch(both, images, labels, 10, step_seed(42, step, 0))[1] for step in range(8)]
    assert len({tuple(t[0].tolist()) for t in others}) > 1  # each step draws anew
    assert step_seed(42, 7, 0) != step_seed(42, 7, 1) != step_seed(43, 7, 0)


def test_entries_that_pad_the_shard_are_not_mixed_and_have_no_target():
    images, labels = batch()
    labels[-2:] = PAD_LABEL
    mixed, targets = mix_batch(batch_mixing(10, mixup_alpha=0.2), images, labels, 10, seed=1)
    assert torch.equal(mixed[-2:], images[-2:]) and not targets[-2:].any()
    assert torch.allclose(targets[:4].sum(-1), torch.ones(4))
    lam = targets[0, labels[0]]  # the real entries are mixed among themselves: the first with the fourth
    assert torch.allclose(mixed[0], lam * images[0] + (1 - lam) * images[3]) and torch.allclose(targets[0, 3], 1 - lam)


def test_the_loss_against_mixed_targets_is_their_cross_entropy_over_the_real_entries():
    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    targets = torch.zeros(4, 10)
    targets[0, [1, 2]] = torch.tensor([0.7, 0.3])
    targets[1, 5] = 1.0
    targets[2, [0, 9]] = torch.tensor([0.4, 0.6])  # row 3: padding
    module = ClassifierModule("lenet5", 10, 32, 1, label_smoothing=0.1, mixup_alpha=0.2)
    smoothed = targets[:3] * 0.9 + 0.1 / 10
    by_hand = -(smoothed * logits[:3].log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(module.training_loss(logits, targets), by_hand, atol=1e-6)
    assert torch.allclose(module.training_loss(logits[:2], targets[:2]),
                          F.cross_entropy(logits[:2], targets[:2], label_smoothing=0.1), atol=1e-6)


def test_mixing_is_refused_with_the_map_criterion(tmp_path, digits_cache):
    cfg = make_cfg(tmp_path, digits_cache, "model.loss=map", "model.cutmix_alpha=1.0")
    with pytest.raises(ConfigValueError, match="model.loss=map needs one label per image"):
        check_values(cfg)
