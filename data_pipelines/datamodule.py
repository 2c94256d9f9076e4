"""Lightning DataModules over the ImageNet folder layout (``layout.py``).

The loaders here decode with PIL through torchvision; the DALI pipelines (issue #4) slot in behind
the same DataModule interface.
"""

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from .digits import write_digits
from .layout import DataConfigError, DataLayoutError, check_layout


def data_parallel_rank_and_size(trainer) -> tuple[int, int]:
    """This process's rank among the data-parallel replicas, and their number.

    Every process is a replica under DDP; under the two-GPU split a replica is a pair of processes,
    which reads one shard together. One process alone is replica 0 of 1.
    """
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    return (kwargs["rank"], kwargs["num_replicas"]) if kwargs else (0, 1)


class ImageFolderDataModule(pl.LightningDataModule):
    """Train/val loaders for ``root/{train,val}/<class>/<image>``.

    Args:
        root: the dataset folder; ``None`` falls back to the ``IMAGENET_ROOT`` environment variable.
        num_classes: classes the model is built for; must equal the number of class folders.
        batch_size: images per optimizer step over all processes (the papers' batch sizes are global:
            128 for AlexNet, 256 for ResNet); each of the N data-parallel processes loads batch_size / N.
        image_size: side of the square crop fed to the model.
        resize_size: the shorter side is resized to this before cropping.
        channels: 3 for RGB, 1 for grayscale models (LeNet-5).
        random_crop: random crops for training (else centre crops).
        flip: random horizontal flips for training.
        border: blank border on each side as a fraction of ``image_size``: the image is resized into
            the field inside it (LeNet-5 read 28x28 digits centred in a 32x32 input).
        translate: random shifts for training, up to this fraction of ``image_size`` each way.
        mean, std: per-channel normalisation on the 0-1 scale (RGB; averaged for grayscale).
        num_workers: loader worker processes.
        name: short data set name used in run names.
        seed: seed of the loader workers' augmentation, combined with the data-parallel rank: the
            processes of one replica (a two-GPU split pair) draw the same augmentation, other
            replicas other augmentation.
    """

    def __init__(self, root: str | None, num_classes: int, batch_size: int = 128, image_size: int = 224,
                 resize_size: int = 256, channels: int = 3, random_crop: bool = True, flip: bool = True,
                 border: float = 0.0, translate: float = 0.0,
                 mean: tuple[float, ...] = (0.485, 0.456, 0.406), std: tuple[float, ...] = (0.229, 0.224, 0.225),
                 num_workers: int = 2, name: str = "imagenet", seed: int = 0) -> None:
        super().__init__()
        self.root = root if root not in (None, "") else os.environ.get("IMAGENET_ROOT")
        self.num_classes, self.batch_size, self.num_workers, self.name = num_classes, batch_size, num_workers, name
        self.seed = seed
        if channels == 1:
            mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
        to_channels = [transforms.Grayscale(1)] if channels == 1 else []
        tail = [*to_channels, transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]
        pad = round(border * image_size)
        resize = [transforms.Resize(resize_size - 2 * pad), transforms.Pad(pad)] if pad else [transforms.Resize(resize_size)]
        train_aug = [transforms.RandomCrop(image_size) if random_crop else transforms.CenterCrop(image_size)]
        if translate:
            train_aug.append(transforms.RandomAffine(degrees=0.0, translate=(translate, translate)))
        if flip:
            train_aug.append(transforms.RandomHorizontalFlip())
        self.train_transform = transforms.Compose([*resize, *train_aug, *tail])
        self.val_transform = transforms.Compose([*resize, transforms.CenterCrop(image_size), *tail])
        self.classes: list[str] = []

    @property
    def per_process_batch_size(self) -> int:
        _, replicas = data_parallel_rank_and_size(self.trainer)
        if self.batch_size % replicas:
            raise DataConfigError(f"data.batch_size={self.batch_size} is the global batch and must divide evenly "
                                  f"over the {replicas} data-parallel replicas; use a multiple of {replicas}")
        return self.batch_size // replicas

    def setup(self, stage: str | None = None) -> None:
        self.per_process_batch_size  # fail before any data is read
        self.classes = check_layout(self.root)
        if len(self.classes) != self.num_classes:
            raise DataLayoutError(f"{self.root} has {len(self.classes)} class folders but the model is configured "
                             f"for data.num_classes={self.num_classes}; set data.num_classes={len(self.classes)}")
        root = Path(self.root).expanduser()
        self.train_set = datasets.ImageFolder(str(root / "train"), transform=self.train_transform)
        self.val_set = datasets.ImageFolder(str(root / "val"), transform=self.val_transform)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        # The workers' seeds are drawn from this generator (torch seeds worker i with base + i).
        rank, _ = data_parallel_rank_and_size(self.trainer)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + rank)
        return DataLoader(dataset, batch_size=self.per_process_batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=False, drop_last=False,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class DigitsDataModule(ImageFolderDataModule):
    """The embedded default: scikit-learn's handwritten digits, cached once under ``root``."""

    def prepare_data(self) -> None:
        write_digits(self.root)
