"""Exact epochs, shards per data-parallel replica, partial epochs and mid-epoch resume of the DALI loader."""

import gc
from collections import Counter

import numpy as np
import pytest
import torch

from data_pipelines import list_dataset
from data_pipelines.dali_loader import PAD_LABEL, DALILoader, epoch_shard, evaluation_order

DIGITS = dict(preset="digits", protocol="center", image_size=32, resize_size=28, channels=1, num_threads=1)


@pytest.fixture(scope="module")
def digits(digits_cache):
    listing = list_dataset(digits_cache / "digits")
    return {split: ([f"{listing.root}/{r}" for r in listing.files[split]], listing.labels[split])
            for split in ("train", "val")}


def loader(samples, **kwargs) -> DALILoader:
    files, labels = samples
    return DALILoader(files, labels, **{"batch_size": 16, "train": True, **DIGITS, **kwargs})


@pytest.mark.parametrize("replicas", [2, 4])
@pytest.mark.parametrize("num_samples", [1437, 360, 7])
def test_shards_cover_every_sample_once_per_epoch(num_samples, replicas):
    for epoch in range(3):
        order = np.random.default_rng([0, epoch]).permutation(num_samples)
        shards = [epoch_shard(order, r, replicas) for r in range(replicas)]
        assert len({len(s) for s in shards}) == 1  # the same number of steps on every replica
        real = np.concatenate([s[s >= 0] for s in shards])
        assert sorted(real.tolist()) == list(range(num_samples))  # each sample once
        assert sum(int((s < 0).sum()) for s in shards) == -num_samples % replicas


def test_the_evaluation_order_is_fixed_and_every_prefix_holds_each_class_in_its_share(digits):
    labels = np.asarray(digits["val"][1])  # the listing is sorted by class: 36 of each of 10 classes
    order = evaluation_order(labels)
    assert sorted(order.tolist()) == list(range(len(labels))) and np.array_equal(order, evaluation_order(labels))
    assert not np.array_equal(order, np.arange(len(labels)))
    skewed = np.repeat([0, 1, 2], [300, 60, 15])  # unequal classes: shares of 80 %, 16 %, 4 %
    for labels in (labels, skewed):
        order = evaluation_order(labels)
        for prefix in (10, 32, 50, 64, 200):
            counts = np.bincount(labels[order[:prefix]], minlength=labels.max() + 1)
            assert np.all(np.abs(counts - prefix * np.bincount(labels) / len(labels)) <= 1), (prefix, counts)


def test_a_validation_cut_short_reads_every_class_in_every_epoch(digits):
    first_two = {}
    for epoch, seed in ((0, 0), (3, 0), (0, 7)):  # the order moves neither with the epoch nor with the seed
        val = loader(digits["val"], train=False, batch_size=32, epoch_fn=lambda: epoch, seed=seed)
        first_two[epoch, seed] = torch.cat([y for _, (_, y) in zip(range(2), val)])
    seen = first_two[0, 0]
    assert sorted(set(seen.tolist())) == list(range(10)) and seen.bincount().min() >= 6  # 64 images: 6-7 a class
    assert all(torch.equal(seen, other) for other in first_two.values())


@pytest.mark.parametrize("replicas", [2, 4])
def test_validation_counts_every_image_once_over_replicas(digits, replicas):
    counted, lengths = Counter(), set()
    for rank in range(replicas):
        val = loader(digits["val"], train=False, rank=rank, replicas=replicas)
        batches = list(val)
        lengths.add((len(val), len(batches)))
        counted.update(label for _, y in batches for label in y.tolist() if label != PAD_LABEL)
    assert len(lengths) == 1  # len() is exact and the same on every replica
    assert counted == Counter(digits["val"][1])


def test_the_two_processes_of_a_pair_read_the_same_batches(digits):
    first, second, other = (list(loader(digits["train"], rank=r, replicas=2)) for r in (0, 0, 1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert not torch.equal(first[0][0], other[0][0])


def test_a_partly_read_epoch_does_not_shorten_the_next(digits):
    val = loader(digits["val"], train=False)
    partial = iter(val)
    next(partial), next(partial)  # Lightning's sanity check stops after two batches
    full = list(val)
    assert len(full) == len(val) == 23 and sum(len(y) for _, y in full) == 360


def test_a_read_epoch_releases_its_pipeline(digits):
    """Validation's pipeline must not be built while the finished training epoch's (and its decoder's
    memory pools, which never shrink) is still alive."""
    train = loader(digits["train"])
    batches = iter(train)
    next(batches)
    assert train._batches_iter is not None and "dali" in train.state_dict()  # mid-epoch: kept, for checkpoints
    rest = list(batches)
    assert train._batches_iter is None and len(rest) == len(train) - 1
    assert train.state_dict() == {"epoch": 0, "batches": len(train), "seed": 0, "replicas": 1}  # no DALI state kept


def test_batches_stay_valid_after_later_batches_and_their_pipeline_are_gone(digits):
    """The batches are DALI's own buffers, not copies: they must outlive the next runs and the epoch's pipeline."""
    epoch = {"n": 0}
    train = loader(digits["train"], epoch_fn=lambda: epoch["n"])
    kept, snapshots = [], []
    for images, labels in train:
        kept.append((images, labels))
        snapshots.append((images.clone(), labels.clone()))
    epoch["n"] = 1
    next_epoch = [images.clone() for images, _ in train]  # a new pipeline; the first one is dropped
    gc.collect()
    assert len(kept) == len(train) == 90
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(kept, snapshots))
    assert not all(torch.equal(a, c) for (a, _), c in zip(kept, next_epoch))


def test_epochs_are_new_permutations(digits):
    epoch = {"n": 0}
    train = loader(digits["train"], epoch_fn=lambda: epoch["n"])
    first = torch.cat([y for _, y in train])
    epoch["n"] = 1
    second = torch.cat([y for _, y in train])
    assert sorted(first.tolist()) == sorted(second.tolist()) and not torch.equal(first, second)


def test_mid_epoch_resume_reads_exactly_what_the_uninterrupted_run_reads(digits):
    uninterrupted = list(loader(digits["train"], epoch_fn=lambda: 3))
    stopped = loader(digits["train"], epoch_fn=lambda: 3)
    for i, _ in enumerate(stopped):
        if i == 9:  # ten batches trained, then the job is preempted
            break
    state = stopped.state_dict()
    assert state["epoch"] == 3 and state["batches"] == 10
    resumed = loader(digits["train"], epoch_fn=lambda: 3)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(uninterrupted) - 10
    for (x, y), (x_ref, y_ref) in zip(rest, uninterrupted[10:]):
        assert torch.equal(y, y_ref) and torch.equal(x, x_ref)  # same samples, same augmentation
    resumed_next_epoch = loader(digits["train"], epoch_fn=lambda: 4)
    resumed_next_epoch.load_state_dict(state)  # a state of another epoch: the epoch starts at its beginning
    assert len(list(resumed_next_epoch)) == len(uninterrupted)


@pytest.mark.gpu
@pytest.mark.dali
def test_the_gpu_decoder_gives_the_cpu_decoders_pixels(tmp_path):
    """The same JPEGs (4:2:0 chroma, as most of ImageNet's) through the `center` views, decoded on the CPU and
    on the GPU: the same shapes, pixels within data_pipelines.decoders' stated tolerance."""
    from data_pipelines.bench import image_files, make_images
    from data_pipelines.decoders import MAX_ABS_TOLERANCE, MEAN_ABS_TOLERANCE, decoder_agreement

    files, _ = image_files(make_images(64, cache=tmp_path))
    result = decoder_agreement(files)
    print(result)
    assert result["shape"] == [3, 224, 224] and result["images"] == 64
    assert result["mean_abs"] <= MEAN_ABS_TOLERANCE and result["max_abs"] <= MAX_ABS_TOLERANCE, result


def test_repeated_augmentation_reads_a_quarter_of_the_images_four_times_each_augmented_apart(digits):
    """``repeats=4`` (torchvision's ``--ra-reps 4``): an epoch as long as without, holding the first quarter of the
    epoch's permutation, each image 4 times; in one process the copies come in a row, each augmented by its own
    draws (the digits' random placement); over 4 replicas each replica gets one copy of every image."""
    files, labels = digits["train"]
    plain, repeated = loader(digits["train"], seed=3), loader(digits["train"], seed=3, repeats=4)
    assert len(repeated) == len(plain) and len(repeated.shard(0)) == len(plain.shard(0)) == 1437
    shard = repeated.shard(0)
    assert np.array_equal(shard[:8], np.repeat(plain.shard(0)[:2], 4))  # the plain epoch's first images, in copies
    assert set(Counter(shard.tolist()).values()) <= {4, 1} and len(set(shard.tolist())) == 360  # 359 x 4 + 1
    images, read = next(iter(repeated))
    assert torch.equal(read[:4], torch.full((4,), int(labels[shard[0]])))
    assert all(not torch.equal(images[0], images[i]) for i in (1, 2, 3))  # one digit, placed four ways
    over_four = [loader(digits["train"], seed=3, repeats=4, rank=r, replicas=4).shard(0) for r in range(4)]
    assert all(np.array_equal(over_four[0][:50], s[:50]) for s in over_four[1:])  # every replica: the same images
    assert loader(digits["val"], train=False, repeats=4).shard(0).tolist() == \
        loader(digits["val"], train=False).shard(0).tolist()  # validation reads each image once
