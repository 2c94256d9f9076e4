"""The two-GPU AlexNet split, run as two real processes over gloo, against the single-device grouped model."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from helpers import free_port as _free_port
from models import create_model, trainable_params
from models.alexnet import AlexNet
from models.alexnet_split import (
    AlexNetTower,
    exchanged_values_per_image,
    grouped_state_dict,
    tower_from_grouped,
    tower_state_dict,
)
from models.memory import saved_activation_bytes, split_tower_memory


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _equivalence_worker(rank: int, port: int, out_dir: str, channels_last: bool = False, cuda: bool = False) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:  # NCCL, one GPU per tower; full fp32 (no TF32) so that the comparison is about the split
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        reference = AlexNet(num_classes=10, dropout=0.0).to(device)  # dropout off: the masks are the only randomness
        x, y = torch.randn(4, 3, 224, 224).to(device), torch.tensor([1, 4, 7, 9]).to(device)  # same on both
        if channels_last:
            # the GPU fast path's layout, on both sides: activations and their gradients are NHWC. (Between
            # layouts, max pooling breaks ties among ReLU's zeros differently: 2 % in conv1's gradient.)
            reference = reference.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        tower = tower_from_grouped(reference, rank)
        ref_logits = reference(x)
        F.cross_entropy(ref_logits, y).backward()
        sent = []  # a spy on the real collective: the values this process sends
        real_all_gather = dist.all_gather
        dist.all_gather = lambda parts, tensor, **kw: (sent.append(tensor.numel()),
                                                       real_all_gather(parts, tensor, **kw))[1]
        try:
            logits = tower(x)
            forward_sent = sum(sent)
            F.cross_entropy(logits, y).backward()
            backward_sent = sum(sent) - forward_sent
        finally:
            dist.all_gather = real_all_gather
        torch.save({"forward": forward_sent, "backward": backward_sent, "images": len(x)},
                   os.path.join(out_dir, f"sent{rank}.pt"))

        report = {"logits": rel_err(logits, ref_logits)}
        ref_grads = tower_state_dict({n: p.grad for n, p in reference.named_parameters()}, rank)
        report.update({f"grad/{n}": rel_err(p.grad, ref_grads[n]) for n, p in tower.named_parameters()})

        for model in (reference, tower):
            torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4).step()
        ref_weights = tower_state_dict(reference.state_dict(), rank)
        report.update({f"weight/{n}": rel_err(p, ref_weights[n]) for n, p in tower.state_dict().items()})
        torch.save(report, os.path.join(out_dir, f"rank{rank}.pt"))

        if channels_last or cuda:
            return
        # what one real tower keeps for its backward pass, dropout on (models.memory counts it without a peer)
        with_dropout = tower_from_grouped(AlexNet(num_classes=10), rank, dropout_seed=rank).train()
        torch.save(saved_activation_bytes(with_dropout, x), os.path.join(out_dir, f"saved{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("channels_last, cuda, tolerance", [
    (False, False, 1e-5), (True, False, 1e-5),
    # cuDNN picks other algorithms for a grouped convolution than for a tower's: fp32 rounding, summed differently
    pytest.param(True, True, 1e-4, marks=pytest.mark.gpu(2))],
    ids=["gloo-nchw", "gloo-channels_last", "nccl-channels_last"])
def test_split_matches_the_grouped_model_in_logits_gradients_and_step(tmp_path, channels_last, cuda, tolerance):
    mp.spawn(_equivalence_worker, args=(_free_port(), str(tmp_path), channels_last, cuda), nprocs=2, join=True)
    for rank in (0, 1):
        report = torch.load(tmp_path / f"rank{rank}.pt")
        assert len([k for k in report if k.startswith("grad/")]) == 16  # 8 layers x (weight, bias)
        sent = torch.load(tmp_path / f"sent{rank}.pt")
        expected = exchanged_values_per_image(num_classes=10)
        print(f"rank {rank}: sent {sent['forward'] // sent['images']:,} values/image forward, "
              f"{sent['backward'] // sent['images']:,} backward (computed: {expected})")
        assert sent["forward"] == sent["images"] * expected["forward"]
        assert sent["backward"] == sent["images"] * expected["backward"]
        worst = max(report, key=report.get)
        print(f"rank {rank}: worst relative error {report[worst]:.2e} ({worst}), logits {report['logits']:.2e}")
        assert report[worst] <= tolerance, (worst, report[worst])
        if channels_last or cuda:
            continue
        saved = torch.load(tmp_path / f"saved{rank}.pt")
        assert saved == split_tower_memory(batch_size=4, num_classes=10).activations > 4 * 3 * 224 * 224 * 4


def test_exchange_per_image_for_imagenet():
    # 4 bytes per fp32 value: 123,344 B forward + 121,344 B backward = 244,688 B per image per tower
    assert exchanged_values_per_image(1000) == {"forward": 30_836, "backward": 30_336}


def test_each_tower_holds_half_the_parameters():
    assert trainable_params(AlexNetTower(num_classes=1000)) * 2 == trainable_params(create_model("alexnet")) \
        == 60_965_224


def test_the_split_fits_in_a_gtx_580_at_batch_128_in_fp32():
    tower = split_tower_memory(batch_size=128)
    assert tower.params == tower.grads == tower.optimizer == 30_482_612 * 4  # SGD momentum: one value per weight
    assert tower.activations == pytest.approx(817.9 * 2**20, rel=1e-3)
    assert tower.total < 3 * 2**30
    small = split_tower_memory(batch_size=64)  # activations scale with the batch, the rest does not
    assert small.activations * 2 == tower.activations and small.params == tower.params


def test_checkpoint_round_trip_between_split_and_grouped():
    grouped = create_model("alexnet", num_classes=10).state_dict()
    towers = [tower_state_dict(grouped, t) for t in (0, 1)]
    assert towers[0]["conv2.weight"].shape == (128, 48, 5, 5) and towers[1]["fc8.weight"].shape == (5, 4096)
    for t in (0, 1):
        AlexNetTower(num_classes=10).load_state_dict(towers[t])  # loads with strict key and shape checks
    joined = grouped_state_dict(towers)
    assert joined.keys() == grouped.keys() and all(torch.equal(joined[k], grouped[k]) for k in grouped)
    create_model("alexnet", num_classes=10).load_state_dict(joined)


def test_odd_class_count_is_refused():
    with pytest.raises(ValueError, match="num_classes must be even, got 7"):
        AlexNetTower(num_classes=7)
