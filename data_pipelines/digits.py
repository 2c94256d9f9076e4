"""The embedded default data set: scikit-learn's 1,797 real handwritten digits (UCI, 8x8, 0-16 grey
levels), written once as the ImageNet folder layout so the default run reads them through the same
code path as ImageNet."""

from pathlib import Path

import numpy as np
from PIL import Image

from .manifest import build_once

VAL_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the train/val split never changes between runs or machines


def write_digits(root: str | Path) -> Path:
    """Writes the digits as ``root/{train,val}/<digit>/<index>.png`` unless this project already did.

    The images are scaled from 0-16 to 0-255 and kept at their native 8x8; the data module resizes
    them to the model's input. The folder is built beside ``root`` and renamed into place, so an
    interrupted write never leaves a half-written cache behind; a ``root`` that exists and is not
    this cache is refused, never replaced.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root).expanduser()
    if (root / ".complete").is_file():  # the marker of the caches written before the manifest existed
        return root
    return build_once(root, "digits", _write, option="data.root")


def _write(folder: Path) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    train_idx, val_idx = train_test_split(np.arange(len(images)), test_size=VAL_FRACTION, random_state=SPLIT_SEED,
                                          stratify=digits.target)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        for i in sorted(idx):
            target = folder / split / str(digits.target[i])
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").save(target / f"{i:04d}.png")
    return {"source": "sklearn.datasets.load_digits", "train": len(train_idx), "val": len(val_idx)}
