"""The ImageNet folder layout every dataset here uses, and its checks.

    ROOT/train/<class>/<image>   e.g. train/n01440764/n01440764_10026.JPEG
    ROOT/val/<class>/<image>     val images sorted into the same class folders
"""

import hashlib
import os
from pathlib import Path

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
EXPECTED = ("expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> "
            "(ImageNet's layout; see `python -m data_pipelines.prepare` in the README)")


class DataConfigError(ValueError):
    """Data settings that cannot work (the message says which and how to fix them)."""


class DataLayoutError(DataConfigError):
    """A data folder that is missing or does not have the expected layout."""


def class_folders(split_dir: Path) -> dict[str, int]:
    """Maps each class folder of one split to its number of images.

    Raises:
        DataLayoutError: naming the path, when the split folder is missing, has no class folders,
            or a class folder holds no images.
    """
    if not split_dir.is_dir():
        raise DataLayoutError(f"{split_dir} does not exist; {EXPECTED}")
    counts = {d.name: sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
              for d in sorted(split_dir.iterdir()) if d.is_dir()}
    if not counts:
        raise DataLayoutError(f"{split_dir} has no class folders; {EXPECTED}")
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        shown = ", ".join(str(split_dir / e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DataLayoutError(f"{len(empty)} empty class folder(s) with no {'/'.join(IMAGE_SUFFIXES)} "
                              f"images: {shown}")
    return counts


def check_layout(root: str | Path | None) -> list[str]:
    """Checks a dataset root and returns its class names (sorted, as the label order).

    Raises:
        DataLayoutError: for an unset or missing root, a missing split, empty class folders, or
            train and val class sets that differ; the message names the path and the fix.
    """
    if root is None or str(root) in ("", "None", "???"):
        raise DataLayoutError("no data root given: set data.root=/path/to/imagenet or the IMAGENET_ROOT "
                              "environment variable, or train on the embedded sample with data=digits")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"data root {root} does not exist; {EXPECTED}")
    train, val = class_folders(root / "train"), class_folders(root / "val")
    if set(train) != set(val):
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        raise DataLayoutError(f"train and val class folders under {root} differ: only in train: "
                              f"{only_train[:5]}{' ...' if len(only_train) > 5 else ''}; only in val: "
                              f"{only_val[:5]}{' ...' if len(only_val) > 5 else ''}")
    return sorted(train)


def cache_dir() -> Path:
    """This project's cache (``CONVNET_CACHE``, else ``~/.cache/convnet-classics``; ``paths.cache_dir``)."""
    return Path(os.environ.get("CONVNET_CACHE") or Path.home() / ".cache" / "convnet-classics").expanduser()


def usable_list(root: str | Path, split: str) -> Path:
    """Where ``python -m data_pipelines.verify`` writes the usable images of a split (the readers use it).

    In this project's cache, keyed on the data folder's absolute path, never in the data folder: a
    command only reads a folder it did not create (and ImageNet often sits on a read-only mount).
    """
    root = Path(root).expanduser().resolve()
    key = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return cache_dir() / "usable" / f"{root.name}-{key}" / f"usable_{split}.txt"


def write_usable_list(root: str | Path, split: str, relative: list[str]) -> Path:
    """Writes the usable images of a split (paths relative to ``root``) where the readers look for them."""
    root = Path(root).expanduser()
    target = usable_list(root, split)
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "root.txt").write_text(f"{root.resolve()}\n")  # whose lists these are
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(f"{p}\n" for p in relative))
    os.replace(tmp, target)  # a run that reads the list never sees half of it
    return target


def list_samples(root: str | Path, split: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """The image paths of one split and their labels (the index of their class folder in ``classes``).

    Reads the usable-image list that ``python -m data_pipelines.verify`` wrote when there is one
    (so files found broken are never read), else lists the class folders.
    """
    root = Path(root).expanduser()
    listed = usable_list(root, split)
    if listed.is_file():
        relative = [line for line in listed.read_text().splitlines() if line]
    else:
        relative = []
        for name in classes:
            with os.scandir(root / split / name) as entries:
                relative += sorted(f"{split}/{name}/{e.name}" for e in entries
                                   if e.name.lower().endswith(IMAGE_SUFFIXES))
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({r.split("/")[1] for r in relative} - set(index))
    if unknown:
        raise DataLayoutError(f"{listed} names class folders that are not in {root / split}: {unknown[:5]}; "
                              f"run python -m data_pipelines.verify {root} again")
    return [str(root / r) for r in relative], [index[r.split("/")[1]] for r in relative]
