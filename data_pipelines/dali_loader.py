"""A Lightning-ready iterable over DALI pipelines: exact epochs, a shard per data-parallel replica, resume.

DALI ignores a reset in the middle of an epoch, and Lightning stops epochs early all the time
(the sanity check, ``limit_*_batches``, a fractional ``val_check_interval``). So each ``iter()``
builds a fresh pipeline over exactly the samples that epoch's shard still has to read, and a partly
read epoch is simply dropped with its pipeline. The shard reaches DALI as a file list made while the
previous epoch trained: with 1.28 M files the first batch comes 0.45-0.6 s after ``iter()`` on one
process (DALI parsing the list, 0.16 s, and snapshotting its reader for checkpoints, 0.24 s). The order
is a permutation drawn from (seed, epoch), sharded by the data-parallel rank; evaluation reads one fixed
order, the same for every run and every epoch, in which every class is spread evenly (``evaluation_order``), so
that a validation cut short (``limit_val_batches``) is a fair sample of every class, not the first few. So:

- every sample is read exactly once per epoch over all replicas: shards are padded to equal length
  (every replica must run the same number of steps) with entries labelled ``PAD_LABEL``, which
  the loss and the metrics ignore;
- ``len()`` is exact and equal on every replica;
- the processes of one replica (a two-GPU split pair) read the same samples with the same
  augmentation (the pipeline's seed is drawn from seed, epoch and replica);
- a run resumed mid-epoch reads exactly the batches the uninterrupted run would have read, the
  same samples with the same augmentation: DALI's own checkpoint of the pipeline (reader position
  and random state) goes into the Lightning checkpoint through ``state_dict()``, and the resumed
  epoch's pipeline is built from it.
"""

import math
import os
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from .augment import DENSE_PROTOCOLS, eval_images, train_images
from .layout import DataConfigError
from .sharding import PAD_LABEL
from .verify import inspect_image

_PAD_IN_LIST = 2**31 - 1  # a DALI file list takes non-negative labels only: padding's label there
READER = "reader"
PREFETCH = 2  # batches DALI prepares ahead of the one being trained on
HW_DECODER_LOAD = 0.65  # DALI's default share of the JPEGs sent to the A100/H100 hardware decoder
# GPU decoding (``mixed``). nvJPEG's buffer paddings are per decoder thread (DALI's schema: one device
# buffer and two pinned host buffers each), so DALI's defaults are kept (16 MiB and 2 x 8 MiB a thread:
# 176 MiB of GPU and 176 MiB of pinned memory for 11 threads; NVIDIA's example's 211 MB and 140 MB would
# be 2.3 GB and 3.1 GB). The hardware decoder's buffers are preallocated for ImageNet's largest image
# (as NVIDIA's DALI ResNet-50 example does). Fancy upsampling: the chroma upsampling of libjpeg-turbo,
# so that ``mixed`` decodes the CPU decoder's pixels and a checkpoint scores the same with either.
GPU_DECODER_SETTINGS = dict(preallocate_width_hint=5980, preallocate_height_hint=6430, jpeg_fancy_upsampling=True)
# how DALI names the file it could not read or decode
_DALI_FILE_ERRORS = (re.compile(r"Failed to decode sample #\d+ : (.+)"), re.compile(r"File mapping failed: (.+)"),
                     re.compile(r"Could not open file (.+)"))


class UnreadableImageError(DataConfigError):
    """An image file that DALI could not read or decode, met while training."""


def unreadable_image_error(error: RuntimeError, suspects: list[str]) -> UnreadableImageError | None:
    """DALI's multi-line pipeline error as one line naming the file and the way out.

    DALI names the file for some failures and not for others ("nvImageCodec failure"); then the
    ``suspects`` (the batches being read when it failed) are decoded here to find it. None: no file
    is at fault, the error is something else.
    """
    found = next((m.group(1).strip() for p in _DALI_FILE_ERRORS if (m := p.search(str(error)))), None)
    if found is None:
        found = next((path for path in suspects if inspect_image(path)[1]), None)
    if found is None:
        return None
    return UnreadableImageError(f"cannot read or decode {found}; run `python -m data_pipelines.verify DATA_ROOT` "
                                f"once: it lists every unusable file, and training then reads only the usable ones")


_PREPARER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dali-file-list")


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


EVALUATION_ORDER_SEED = 2012  # fixed: every run, every epoch and every evaluation reads validation in one order


def evaluation_order(labels) -> np.ndarray:
    """The order validation reads its samples in: stratified, so that every prefix holds each class in its share
    of the set (within one image), each class's images and the ties between classes in a fixed random order.
    A sorted listing read in order would put the first classes alone in a shortened validation (two batches of
    the digits: two classes, 100 % error)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(EVALUATION_ORDER_SEED)
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        position[members] = (np.arange(len(members)) + rng.random()) / len(members)  # evenly spaced in [0, 1)
    return np.lexsort((rng.random(len(labels)), position))


def epoch_shard(order: np.ndarray, rank: int, replicas: int) -> np.ndarray:
    """The sample indices replica ``rank`` reads of ``order``, padded with -1 to ``ceil(len(order) / replicas)``."""
    shard = order[rank::replicas]
    padding = math.ceil(len(order) / replicas) - len(shard)
    return np.concatenate([shard, np.full(padding, -1, dtype=shard.dtype)])


@pipeline_def
def _image_pipeline(file_list: str, file_root: str, mmap: bool, train: bool, preset: str, protocol: str,
                    image_size: int, resize_size: int, channels: int, scale_range, decoder: str,
                    hw_decoder_load: float, prepared_side: int | None,
                    prepared_square: bool, scales: tuple[int, ...] = (), auto_augment: str | None = None,
                    random_erase: float = 0.0):
    # the epoch's shard as a file list (DALI reads it in C++: 0.4 s for 1.28 M files, against 1.5 s for
    # the same list passed as a Python argument); mmap off on network file systems (DALI's advice)
    encoded, label = fn.readers.file(file_list=file_list, file_root=file_root, dont_use_mmap=not mmap, name=READER)
    decode = dict(device=decoder, output_type=types.GRAY if channels == 1 else types.RGB)
    if decoder == "mixed":  # nvJPEG; on A100/H100 part of each batch goes to the hardware JPEG decoder
        decode.update(GPU_DECODER_SETTINGS, hw_decoder_load=hw_decoder_load)
    if train:
        images = train_images(encoded, decode, preset, image_size, resize_size, channels, scale_range, prepared_side,
                              prepared_square, auto_augment, random_erase)
    else:
        images = eval_images(encoded, decode, protocol, preset, image_size, resize_size, channels, prepared_side,
                             scales)
    label = label.gpu() if decoder == "mixed" else label
    return (*images, label) if isinstance(images, list) else (images, label)  # dense: a view and shape per scale


def _cut_out(out: dict, scales) -> list[tuple[torch.Tensor, ...]]:
    """Each image's views out of their padded batches: one tuple per image, one view of its own size per scale."""
    per_scale = []
    for s in scales:
        sizes = out[f"shape{s}"].tolist()  # (C, H, W) before padding
        per_scale.append([out[f"view{s}"][i, :, :h, :w] for i, (_, h, w) in enumerate(sizes)])
    return list(zip(*per_scale))


class DALILoader:
    """Batches ``(images, labels)`` of one split through a DALI pipeline (see the module docstring).

    Args:
        files: image paths (relative to ``file_root`` when it is given); ``labels``: their class indices.
        file_root: the folder the paths are relative to, or None for absolute paths.
        mmap: DALI memory-maps the files (its default); False reads them (network file systems).
        batch_size: images per step on this replica.
        train: training augmentation and a shuffled order, else evaluation crops in file order.
        epoch_fn: returns the current epoch (the trainer's), which picks the order and the seed.
        rank, replicas: this process's data-parallel replica and their number.
        device_id: the GPU for ``decoder="mixed"`` (GPU decoding and augmentation); ``None`` with ``"cpu"``.
        num_threads: DALI CPU threads.
        hw_decoder_load: the share of JPEGs the GPU's hardware decoder takes (``mixed`` on A100/H100).
        prepared_side, prepared_square: the shorter side of every image of a prepared copy (``prepare resize``),
            else None; and whether the copy kept the centre square.
        scales: the test scales of the dense protocols (``protocol=dense|multiscale``); their batches are
            ``(views, labels)`` with ``views`` a list with one tuple per image of its whole-image views, one per
            scale, each of its own size (``augment.dense_views``).
        The rest: see ``augment.train_augment`` and ``augment.eval_crops``.
    """

    def __init__(self, files: list[str], labels, *, file_root: str | None = None, mmap: bool = True,
                 batch_size: int, train: bool, preset: str,
                 protocol: str, image_size: int, resize_size: int, channels: int, scale_range=(256, 480),
                 seed: int = 0, epoch_fn: Callable[[], int] = lambda: 0, rank: int = 0, replicas: int = 1,
                 device_id: int | None = None, decoder: str = "cpu", num_threads: int = 2,
                 hw_decoder_load: float = HW_DECODER_LOAD, prepared_side: int | None = None,
                 prepared_square: bool = False, scales: tuple[int, ...] = (), auto_augment: str | None = None,
                 random_erase: float = 0.0, repeats: int = 1) -> None:
        if not files:
            raise ValueError("no images to read")
        # one line of DALI's file list per sample, and a last one for the padding entries (the first file); an
        # object array: an epoch's lines are gathered by numpy (0.14 s for 1.28 M, against 0.33 s from a list)
        self._lines = np.array([f"{f} {int(label)}\n" for f, label in zip(files, labels)] +
                               [f"{files[0]} {_PAD_IN_LIST}\n"], dtype=object)
        self._evaluation_order = None if train else evaluation_order(labels)
        self.file_root, self.mmap = file_root, mmap
        self.batch_size, self.train, self.seed, self.epoch_fn = batch_size, train, seed, epoch_fn
        self.rank, self.replicas, self.repeats = rank, replicas, int(repeats) if train else 1
        self.device_id, self.decoder, self.num_threads = device_id, decoder, num_threads
        self.graph = dict(train=train, preset=preset, protocol=protocol, image_size=image_size,
                          resize_size=resize_size, channels=channels,
                          scale_range=tuple(scale_range) if scale_range else None, decoder=decoder,
                          hw_decoder_load=hw_decoder_load, prepared_side=prepared_side,
                          prepared_square=prepared_square, scales=tuple(scales),
                          auto_augment=auto_augment if train else None, random_erase=random_erase if train else 0.0)
        self.dense = not train and protocol in DENSE_PROTOCOLS
        self._epoch, self._batches, self._resume_at, self._batches_iter = 0, 0, None, None
        self._ahead: tuple[int, Future] | None = None  # an epoch's file list, made ahead of time

    @property
    def num_samples(self) -> int:
        return len(self._lines) - 1

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.num_samples / self.replicas) / self.batch_size)

    def state_dict(self) -> dict:
        """The position in the epoch, and what the epoch's order is drawn from (the seed, the replicas: a resume
        with others is refused, ``trainer/run/resume.py``); Lightning stores it in its checkpoints."""
        state = {"epoch": self._epoch, "batches": self._batches, "seed": self.seed, "replicas": self.replicas}
        if self._batches_iter is not None and self._batches < len(self):
            state["dali"] = self._batches_iter.checkpoints()[0]  # DALI's reader position and random state
        return state

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = state

    def shard(self, epoch: int) -> np.ndarray:
        """What this replica reads in ``epoch``: training, a permutation drawn from (seed, epoch); evaluation, the
        one fixed ``evaluation_order``.

        With ``repeats`` (repeated augmentation: Hoffer et al. 2020, Berman et al. 2019; torchvision's
        ``RASampler``, ``--ra-reps``), every image of the permutation comes ``repeats`` times in a row and the epoch
        keeps its length: it holds the first ``1 / repeats`` of the permutation, each image in as many copies,
        which the replicas' stride deals to different processes (to the same batch in one process), each
        augmented by its own draws. (torchvision also cuts the epoch to a multiple of 256 images; not here.)"""
        if not self.train:
            return epoch_shard(self._evaluation_order, self.rank, self.replicas)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        if self.repeats > 1:
            order = np.repeat(order, self.repeats)[:self.num_samples]
        return epoch_shard(order, self.rank, self.replicas)

    def _shard_lines(self, epoch: int) -> list[str]:
        """The lines of the epoch's file list: this replica's shard only; padding (-1) takes the last line."""
        index = self.shard(epoch)
        return self._lines[np.where(index >= 0, index, self.num_samples)].tolist()

    def _file_list(self, epoch: int) -> bytes:
        return "".join(self._shard_lines(epoch)).encode()

    def _file_list_for(self, epoch: int) -> bytes:
        """The epoch's file list, made ahead while the previous epoch trained (a training loader) or kept from
        the last time (evaluation reads the same list every time): an epoch then starts in about 0.25 s on
        1.28 M files (building DALI's pipeline and its first batch), instead of 0.55 s."""
        ahead, self._ahead = self._ahead, None
        text = ahead[1].result() if ahead is not None and ahead[0] == epoch else self._file_list(epoch)
        if not self.train:
            self._ahead = (epoch, _done(text))
        else:
            self._ahead = (epoch + 1, _PREPARER.submit(self._file_list, epoch + 1))
        return text

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, resume = self.epoch_fn(), self._resume_at
        resume = resume if resume is not None and resume["epoch"] == epoch and "dali" in resume else None
        self._resume_at, self._batches_iter = None, None  # an unfinished earlier epoch is dropped here
        self._epoch, self._batches = epoch, resume["batches"] if resume else 0
        seed = int(np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1)[0] % 2**31)
        # exec_dynamic: outputs stay valid while referenced, so the PyTorch iterator hands them over without
        # a copy (DALI >= 1.44); the classic executor recycles its buffers and the iterator copies every batch
        # (38 MB at batch 64 x 224 px: 10 % of the CPU pipeline's time)
        with tempfile.NamedTemporaryFile("wb", prefix="dali-epoch-", suffix=".txt") as file_list:
            file_list.write(self._file_list_for(epoch))  # only this replica's shard goes to DALI
            file_list.flush()
            pipe = _image_pipeline(file_list=file_list.name, file_root=self.file_root or "", mmap=self.mmap,
                                   **self.graph, batch_size=self.batch_size, num_threads=self.num_threads,
                                   device_id=self.device_id, seed=seed, prefetch_queue_depth=PREFETCH,
                                   enable_checkpointing=True, exec_dynamic=True,
                                   enable_conditionals=bool(self.graph["auto_augment"]),  # TrivialAugment's choice
                                   checkpoint=resume["dali"] if resume else None)
            pipe.build()  # reads the list; the file goes when this block ends
        try:  # a broken file stops the run with its name, not a DALI stack dump (the iterator reads ahead)
            scales = range(len(self.graph["scales"])) if self.dense else ()
            outputs = [name for s in scales for name in (f"view{s}", f"shape{s}")] or ["images"]
            self._batches_iter = DALIGenericIterator(pipe, [*outputs, "labels"], reader_name=READER,
                                                     auto_reset=False, last_batch_policy=LastBatchPolicy.PARTIAL)
            for out in self._batches_iter:
                self._batches += 1
                labels = out[0]["labels"].squeeze(-1).long()
                images = _cut_out(out[0], scales) if self.dense else out[0]["images"]
                yield images, labels.masked_fill(labels == _PAD_IN_LIST, PAD_LABEL)
            # the epoch is read: release its pipeline (and its decoder's memory pools) before the next
            # one, or validation's, is built; the batches handed out stay valid while referenced
            self._batches_iter = pipe = None
        except RuntimeError as e:
            first = self._batches * self.batch_size  # the batch being read and those DALI reads ahead
            suspects = [os.path.join(self.file_root or "", line.rsplit(" ", 1)[0])
                        for line in self._shard_lines(epoch)[first:first + (PREFETCH + 1) * self.batch_size]]
            if (unreadable := unreadable_image_error(e, suspects)) is None:
                raise
            raise unreadable from None
