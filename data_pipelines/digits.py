"""The embedded default data set: scikit-learn's 1,797 real handwritten digits (UCI, 8x8, 0-16 grey
levels), written once as the ImageNet folder layout so the default run reads them through the same
code path as ImageNet."""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

VAL_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the train/val split never changes between runs or machines
_DONE = ".complete"


def write_digits(root: str | Path) -> Path:
    """Writes the digits as ``root/{train,val}/<digit>/<index>.png`` unless already there.

    The images are scaled from 0-16 to 0-255 and kept at their native 8x8; the data module resizes
    them to the model's input. The folder is built beside ``root`` and renamed into place, so an
    interrupted write never leaves a half-written cache behind.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root).expanduser()
    if (root / _DONE).exists():
        return root
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    index = np.arange(len(images))
    train_idx, val_idx = train_test_split(index, test_size=VAL_FRACTION, random_state=SPLIT_SEED,
                                          stratify=digits.target)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for split, idx in (("train", train_idx), ("val", val_idx)):
            for i in sorted(idx):
                folder = tmp / split / str(digits.target[i])
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i], mode="L").save(folder / f"{i:04d}.png")
        (tmp / _DONE).write_text(f"{len(train_idx)} train, {len(val_idx)} val\n")
        if root.exists():  # a partial folder from an older, interrupted version of this function
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
