"""Lightning DataModules over the ImageNet folder layout (``layout.py``), read through DALI pipelines."""

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from .augment import AUTO_AUGMENTS, DENSE_PROTOCOLS, DIGIT_PRESETS, EVAL_PROTOCOLS, PRESETS
from .dali_loader import HW_DECODER_LOAD, DALILoader
from .digits import write_digits
from .layout import DataConfigError, DataLayoutError, Listing, check_class_count, list_dataset, take_listed_before_start
from .manifest import read_manifest
from .sharding import batch_refusal, dali_threads, data_parallel_rank_and_size

DECODERS = ("auto", "cpu", "mixed")
# Folders whose images this project encoded itself (decoded and written whole): nothing in them is truncated
ENCODED_HERE = ("digits", "mnist", "resized", "bench-jpegs", "bench-prepared")
log = logging.getLogger(__name__)


def unverified_warning(root: str, listing: Listing) -> str | None:
    """What a run on a folder that ``verify`` never read risks, said once at its start (else None)."""
    if listing.source == "usable lists" or (read_manifest(root) or {}).get("kind") in ENCODED_HERE:
        return None
    return (f"data.root={root} has not been verified: the training crops decode only the rows of a JPEG they "
            f"need, so a truncated file whose break lies below the crop is trained on without an error, and one "
            f"broken where it is read stops the run mid-epoch. Run python -m data_pipelines.verify {root} once "
            f"(all cores): it lists the unreadable files and the readers then leave them out")


def prepared_copy(root: str, graph: dict) -> tuple[int | None, bool]:
    """The shorter side of every image when ``root`` is a copy made by ``prepare resize`` (else None), and
    whether the copy kept the centre square.

    Raises:
        DataConfigError: the copy keeps fewer pixels than the preset or the evaluation needs (the
            ``resnet`` preset's shorter side goes up to ``scale_range``'s top), naming the size to prepare at.
    """
    manifest = read_manifest(root)
    if not manifest or manifest.get("kind") != "resized":
        return None, False
    side = int(manifest["size"])
    if manifest.get("square") and graph["protocol"] in DENSE_PROTOCOLS:
        raise DataConfigError(f"{root} keeps only the centre square of each image (prepare resize --square), but "
                              f"data.eval_protocol={graph['protocol']} scores the whole image; evaluate on the "
                              f"originals, or on a copy prepared without --square")
    needs = {"evaluation": max((graph["resize_size"], *graph["scales"])), "alexnet": graph["resize_size"],
             "resnet": max(graph["scale_range"] or (0,)),
             "inception": graph["image_size"]}
    for what in ("evaluation", graph["preset"]):
        if needs.get(what, 0) > side:
            setting = "data.scale_range" if what == "resnet" else "data.resize_size"
            raise DataConfigError(
                f"{root} was prepared at shorter side {side} (prepare resize --size {side}), but the {what} "
                f"{'preset' if what != 'evaluation' else 'protocol'} needs {needs[what]} px ({setting}); prepare "
                f"a copy with --size {needs[what]} from the originals, or train on the originals")
    return side, bool(manifest.get("square"))


class ImageFolderDataModule(pl.LightningDataModule):
    """Train/val batches of ``root/{train,val}/<class>/<image>`` through DALI (``dali_loader.py``).

    Args:
        root: the dataset folder; ``None`` falls back to the ``IMAGENET_ROOT`` environment variable.
        num_classes: classes the model is built for; must equal the number of class folders.
        batch_size: images per optimizer step over all processes (the papers' batch sizes are global:
            128 for AlexNet, 256 for ResNet); each of the N data-parallel replicas loads batch_size / N.
        image_size: side of the square crop fed to the model.
        resize_size: the shorter side before cropping (256 in the papers; evaluation always uses it).
        channels: 3 for RGB, 1 for grey models (LeNet-5).
        preset: the training augmentation: ``alexnet``, ``resnet``, ``inception`` or ``digits``
            (``augment.train_augment``).
        eval_protocol: ``center`` (one centre crop), ``tencrop`` (4 corners + centre and their mirrors,
            softmax averaged), ``dense`` (the whole image at shorter side ``resize_size``, or ``eval_scales``'s one,
            the network fully convolutional) or ``multiscale`` (the same at each of ``eval_scales``): the protocol
            a paper figure was measured with.
        eval_scales: the test scales (shorter sides) of the dense protocols; None: ``resize_size`` for ``dense``
            (``image_size`` for the digit presets, whose whole image is the field the digit sits in).
        scale_range: the random shorter side of the ``resnet`` preset (He et al.'s [256, 480] by default; None
            where no preset uses it: the digit sets' configs).
        decoder: ``auto`` (GPU decoding, ``mixed``, when the process trains on a GPU, else ``cpu``),
            ``cpu`` or ``mixed``.
        num_workers: DALI CPU threads per process, or ``auto``: the CPUs the process may use, less one
            (``dali_threads``); 0 is taken as 1 (DALI always has a thread of its own).
        hw_decoder_load: with ``mixed``, the share of JPEGs the hardware decoder of an A100/H100 takes
            (``None``: DALI's default, ``dali_loader.HW_DECODER_LOAD``; the rest goes to nvJPEG's CUDA decoder).
        mmap: DALI memory-maps the files (its default); ``False`` reads them instead (``dont_use_mmap``),
            which DALI's documentation advises on network file systems.
        name: short data set name used in run names.
        how_to_make: the command that makes ``root`` when it does not exist (said in the error).
        seed: with the epoch and the data-parallel replica, picks the sample order and augmentation.
        auto_augment: ``trivial_augment``: TrivialAugment Wide on every training image (``augment.train_images``);
            ``None``: none.
        random_erase: the probability that a training image has a random box erased (torchvision's
            ``RandomErasing``); 0: never.
        repeated_augment: each training image read this many times in an epoch of the same length (``dali_loader``'s
            ``shard``; torchvision's ``--ra-sampler --ra-reps``); 1: none.
        train_image_size: the side of the training crops when it differs from ``image_size``, which validation
            crops (torchvision's ResNet-50 V2 recipe trains at 176 and validates at 224 from a shorter side of
            232, Touvron et al. 2019's "train-test resolution discrepancy"); ``None``: ``image_size``.
    """

    def __init__(self, root: str | None, num_classes: int, batch_size: int = 128, image_size: int = 224,
                 resize_size: int = 256, channels: int = 3, preset: str = "alexnet", eval_protocol: str = "center",
                 scale_range: tuple[int, int] | None = (256, 480), decoder: str = "auto",
                 num_workers: int | str = "auto",
                 hw_decoder_load: float | None = None, mmap: bool = True, name: str = "imagenet",
                 seed: int = 0, how_to_make: str | None = None, eval_scales: list[int] | None = None,
                 auto_augment: str | None = None, random_erase: float = 0.0,
                 train_image_size: int | None = None, repeated_augment: int = 1) -> None:
        super().__init__()
        for value, valid, key in ((preset, PRESETS, "preset"), (eval_protocol, EVAL_PROTOCOLS, "eval_protocol"),
                                  (decoder, DECODERS, "decoder")):
            if value not in valid:
                raise DataConfigError(f"data.{key}={value} is not one of {', '.join(valid)}")
        if auto_augment not in (None, *AUTO_AUGMENTS):
            raise DataConfigError(f"data.auto_augment={auto_augment} is not null or {', '.join(AUTO_AUGMENTS)}")
        if auto_augment and channels == 1:  # DALI's suite on one channel corrupted the heap (glibc abort), measured
            raise DataConfigError(f"data.auto_augment={auto_augment} works on RGB images, not grey ones (channels=1)")
        self.root = root if root not in (None, "") else os.environ.get("IMAGENET_ROOT")
        self.num_classes, self.batch_size, self.name, self.seed = num_classes, batch_size, name, seed
        self.how_to_make = how_to_make
        self.decoder, self.num_workers, self.mmap = decoder, num_workers, mmap
        self.hw_decoder_load = HW_DECODER_LOAD if hw_decoder_load is None else hw_decoder_load
        whole = image_size if preset in DIGIT_PRESETS else resize_size  # a digit's whole image is its field
        scales = tuple(eval_scales or ((whole,) if eval_protocol == "dense" else ()))
        if eval_protocol == "multiscale" and len(scales) < 2:
            raise DataConfigError(f"data.eval_protocol=multiscale averages over several test scales, but "
                                  f"data.eval_scales={list(scales) or None}; give them, e.g. "
                                  f"data.eval_scales=[224,256,384,480,640] (ResNet's)")
        self.graph = dict(preset=preset, protocol=eval_protocol, image_size=image_size, resize_size=resize_size,
                          channels=channels, scale_range=tuple(scale_range) if scale_range else None,
                          scales=scales if eval_protocol in DENSE_PROTOCOLS else (), auto_augment=auto_augment,
                          random_erase=float(random_erase))
        self.train_image_size, self.repeated_augment = train_image_size or image_size, int(repeated_augment)
        self.threads, self.threads_how = 1, ""  # set in setup(), once the processes are known
        self.classes: list[str] = []
        self.listing: Listing | None = None

    @property
    def per_process_batch_size(self) -> int:
        _, replicas = data_parallel_rank_and_size(self.trainer)
        if refusal := batch_refusal(self.batch_size, replicas):
            raise DataConfigError(refusal)
        return self.batch_size // replicas

    def setup(self, stage: str | None = None) -> None:
        self.per_process_batch_size  # fail before any data is read
        processes = self.trainer.num_devices if self.trainer is not None else 1  # processes on this node
        self.threads, self.threads_how = dali_threads(self.num_workers, processes)
        self.listing = self._list_once()
        self.classes = self.listing.classes
        check_class_count(self.root, self.classes, self.num_classes)
        self.graph["prepared_side"], self.graph["prepared_square"] = prepared_copy(self.root, self.graph)
        warning = unverified_warning(self.root, self.listing)
        if warning and (self.trainer is None or self.trainer.is_global_zero):
            log.warning(warning)

    def _list_once(self) -> Listing:
        """The data set's listing, made by the job's first process and sent to the others (``list_dataset``:
        from verify's usable lists without a directory walk, else one walk; the one the check before the run
        made, when there was one); a problem found there is raised in every process."""
        if self.how_to_make and self.root and not Path(self.root).expanduser().exists():
            raise DataLayoutError(f"{self.root} does not exist; make it with: {self.how_to_make}")
        strategy = self.trainer.strategy if self.trainer is not None else None
        if strategy is None or strategy.world_size == 1:
            return take_listed_before_start(self.root) or list_dataset(self.root)
        found: Listing | str | None = None
        if strategy.global_rank == 0:
            try:
                found = take_listed_before_start(self.root) or list_dataset(self.root)
            except DataLayoutError as e:
                found = str(e)
        found = strategy.broadcast(found, src=0)
        if isinstance(found, str):
            raise DataLayoutError(found)
        return found

    def decoder_for_device(self) -> tuple[str, int | None]:
        """The decoder and the GPU it runs on: GPU decoding when this process trains on a GPU."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        decoder = self.decoder if self.decoder != "auto" else ("mixed" if device.type == "cuda" else "cpu")
        if decoder == "mixed" and device.type != "cuda":
            raise DataConfigError("data.decoder=mixed decodes on the GPU, but this process runs on the CPU; "
                                  "use data.decoder=auto or cpu")
        return decoder, (device.index or 0) if decoder == "mixed" else None

    def graph_for(self, train: bool) -> dict:
        """The pipeline's settings for training or for validation (their crops may differ: ``train_image_size``)."""
        return {**self.graph, "image_size": self.train_image_size} if train else self.graph

    def _loader(self, split: str, train: bool) -> DALILoader:
        rank, replicas = data_parallel_rank_and_size(self.trainer)
        decoder, device_id = self.decoder_for_device()
        files, labels = self.listing.files[split], self.listing.labels[split]
        epoch = (lambda: self.trainer.current_epoch) if train and self.trainer is not None else (lambda: 0)
        return DALILoader(files, labels, file_root=self.listing.root, mmap=self.mmap,
                          batch_size=self.per_process_batch_size, train=train, **self.graph_for(train), seed=self.seed,
                          epoch_fn=epoch, rank=rank, replicas=replicas, device_id=device_id,
                          decoder=decoder, num_threads=self.threads, hw_decoder_load=self.hw_decoder_load,
                          repeats=self.repeated_augment if train else 1)

    def sample_images(self, count: int, epoch: int) -> torch.Tensor:
        """``count`` training images drawn at random (seeded by the run's seed, the epoch and the data-parallel
        replica), through the training augmentation: what optim=sdlm estimates its curvature on."""
        import numpy as np

        rank, _ = data_parallel_rank_and_size(self.trainer)
        files, labels = self.listing.files["train"], self.listing.labels["train"]
        pick = np.random.default_rng([self.seed, epoch, rank, 1998]).choice(len(files), min(count, len(files)),
                                                                            replace=False)
        decoder, device_id = self.decoder_for_device()
        loader = DALILoader([files[i] for i in pick], labels[pick], file_root=self.listing.root, mmap=self.mmap,
                            batch_size=min(len(pick), 100), train=True, **self.graph_for(True), seed=self.seed + 1,
                            epoch_fn=lambda: epoch, rank=0, replicas=1, device_id=device_id, decoder=decoder,
                            num_threads=self.threads, hw_decoder_load=self.hw_decoder_load)
        return torch.cat([images for images, _ in loader])[:len(pick)]

    def train_dataloader(self) -> DALILoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DALILoader:
        return self._loader("val", train=False)


class DigitsDataModule(ImageFolderDataModule):
    """The embedded default: scikit-learn's handwritten digits, cached once under ``root``.

    ``resize_size=None`` sizes the digit to 7/8 of the input, centred in it: LeNet-5 read 28x28 digits
    in a 32x32 field, so the ``digits`` preset's random placement shifts them by up to 2 pixels.
    """

    def __init__(self, root: str | None, num_classes: int, image_size: int = 32, resize_size: int | None = None,
                 preset: str = "digits", **kwargs) -> None:
        resize_size = resize_size or round(image_size * 7 / 8)
        super().__init__(root, num_classes, image_size=image_size, resize_size=resize_size, preset=preset, **kwargs)

    def prepare_data(self) -> None:
        write_digits(self.root)
