"""The ImageNet folder layout every dataset here uses, and its checks.

    ROOT/train/<class>/<image>   e.g. train/n01440764/n01440764_10026.JPEG
    ROOT/val/<class>/<image>     val images sorted into the same class folders
"""

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
EXPECTED = ("expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> "
            "(ImageNet's layout; see `python -m data_pipelines.prepare` in docs/data.md)")


class DataConfigError(ValueError):
    """Data settings that cannot work (the message says which and how to fix them)."""


class DataLayoutError(DataConfigError):
    """A data folder that is missing or does not have the expected layout."""


@dataclass
class Listing:
    """A data set's images: the class names (sorted: the label order) and, per split, the image paths
    relative to ``root`` with their labels. Made once per job (``list_dataset``) and shared."""

    root: str
    classes: list[str]
    files: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    source: str  # "usable lists" or "the folders"

    def __len__(self) -> int:
        return sum(len(f) for f in self.files.values())


def _link_problem(entry: os.DirEntry) -> str | None:
    """For a symbolic link in a data folder, why it cannot be read: a loop (to itself, or to a folder that holds
    it: a walk would never end) or a target that does not exist; None for a link to a file or folder elsewhere."""
    path = Path(entry.path)
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:  # ELOOP (RuntimeError "Symlink loop" before Python 3.13), ENOENT
        looped = isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP
        return (f"is a symbolic link that loops ({os.readlink(path)})" if looped else
                f"is a symbolic link to {os.readlink(path)}, which does not exist")
    if target.is_dir() and path.parent.resolve().is_relative_to(target):
        return f"is a symbolic link to {target}, a folder that holds it: a loop"
    return None


def _check_entry(folder: Path, entry: os.DirEntry) -> None:
    """A link that loops or leads nowhere, and a name with a line break, named in one line (the readers' file
    lists hold one path a line)."""
    if "\n" in entry.name or "\r" in entry.name:
        raise DataLayoutError(f"{str(folder / entry.name)!r}: its name holds a line break, which the readers' file "
                              f"lists (one path a line) cannot hold; rename it")
    problem = _link_problem(entry) if entry.is_symlink() else None
    if problem:
        raise DataLayoutError(f"{folder / entry.name} {problem}; remove it, or make it lead to a class folder or an "
                              f"image")


def _classes(split_dir: Path) -> list[str]:
    """The class folders of a split, sorted (hidden folders, an interrupted prepare's, are not classes)."""
    if not split_dir.is_dir():
        raise DataLayoutError(f"{split_dir} does not exist; {EXPECTED}")
    with os.scandir(split_dir) as entries:
        entries = [e for e in entries if not e.name.startswith(".")]
    for entry in entries:
        _check_entry(split_dir, entry)
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        raise DataLayoutError(f"{split_dir} has no class folders; {EXPECTED}")
    return classes


def _images(folder: Path) -> list[str]:
    """The image files of a class folder, sorted."""
    with os.scandir(folder) as entries:
        images = [e for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES) or "\n" in e.name]
    for entry in images:
        _check_entry(folder, entry)
    return sorted(e.name for e in images)


def _no_images(split_dir: Path, empty: list[str]) -> DataLayoutError:
    shown = ", ".join(str(split_dir / e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
    return DataLayoutError(f"{len(empty)} class folder(s) with no {'/'.join(IMAGE_SUFFIXES)} images: {shown}; "
                           f"{EXPECTED}")


def _walk(root: Path, split: str) -> list[str]:
    """The images of one split, ``split/<class>/<name>`` sorted, in one ``os.scandir`` per folder.

    Raises:
        DataLayoutError: naming the path, when the split folder is missing, has no class folders,
            or a class folder holds no images.
    """
    split_dir = root / split
    relative, empty = [], []
    for name in _classes(split_dir):
        images = _images(split_dir / name)
        if not images:
            empty.append(name)
        relative += [f"{split}/{name}/{image}" for image in images]
    if empty:
        raise _no_images(split_dir, empty)
    return relative


def list_before_start(root: str | Path) -> "Listing":
    """The check before a run starts (a bad layout stops it there, with nothing written) is the job's one
    listing: ``list_dataset``, kept for this process's DataModule, which takes it (``take_listed_before_start``)
    instead of walking the folders a second time. On ImageNet over a network file system a walk costs minutes.

    Raises:
        DataLayoutError: see ``list_dataset``.
    """
    listing = list_dataset(root)
    _LISTED_BEFORE_START[Path(root).expanduser().resolve()] = listing
    return listing


def check_class_count(root: str | Path, classes: list[str], num_classes: int) -> None:
    """The class folders against ``data.num_classes`` (the model's outputs): checked before the run starts
    (``trainer/config_check/``) and as the data module sets up.

    Raises:
        DataLayoutError: fewer than 2 classes, or another number than ``num_classes``, with the fix.
    """
    if len(classes) < 2:
        raise DataLayoutError(f"{root} has {len(classes)} class folder(s): a classifier needs at least 2 "
                              f"(ROOT/train/<class>/<image>, one folder per class)")
    if len(classes) != num_classes:
        raise DataLayoutError(f"{root} has {len(classes)} class folders but the model is configured "
                              f"for data.num_classes={num_classes}; set data.num_classes={len(classes)}")


def take_listed_before_start(root: str | Path) -> "Listing | None":
    """The listing this process made of ``root`` before the run started, once (None if it made none)."""
    return _LISTED_BEFORE_START.pop(Path(root).expanduser().resolve(), None) if root else None


_LISTED_BEFORE_START: dict[Path, "Listing"] = {}


def list_dataset(root: str | Path | None, use_lists: bool = True) -> Listing:
    """Lists a data set once: from ``verify``'s usable lists when both exist (no directory walk at all:
    on ImageNet's 1.33 M files that is 2,000 folder listings saved), else one walk of the folders.

    Raises:
        DataLayoutError: for an unset or missing root, a missing split, empty class folders, or
            train and val class sets that differ; the message names the path and the fix.
    """
    if root is None or str(root) in ("", "None", "???"):
        raise DataLayoutError("no data root given: set data.root=/path/to/imagenet or the IMAGENET_ROOT "
                              "environment variable, or train on the embedded sample with data=digits")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataLayoutError(f"data root {root} is a file, not a folder; {EXPECTED}")
    if not root.is_dir():
        raise DataLayoutError(f"data root {root} does not exist; {EXPECTED}")
    lists = {split: usable_list(root, split) for split in ("train", "val")}
    from_lists = use_lists and all(p.is_file() for p in lists.values())
    if from_lists:
        relative = {split: [line for line in p.read_text().splitlines() if line] for split, p in lists.items()}
    else:
        relative = {split: _walk(root, split) for split in ("train", "val")}
    empty = [split for split, rel in relative.items() if not rel]
    if empty:
        raise DataLayoutError(
            f"{root} has no usable images in {' and '.join(empty)}: " + (
                f"verify's lists ({lists['train'].parent}) hold none, so every file there was unreadable; see "
                f"verify's report, replace the files and run python -m data_pipelines.verify {root} again"
                if from_lists else EXPECTED))
    classes = {split: sorted({r.split("/", 2)[1] for r in rel}) for split, rel in relative.items()}
    if classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"]))
        only_val = sorted(set(classes["val"]) - set(classes["train"]))
        where = f"the usable lists of {root} ({lists['train'].parent})" if from_lists else f"class folders under {root}"
        fix = f"; run python -m data_pipelines.verify {root} again" if from_lists else ""
        raise DataLayoutError(f"train and val {where} differ: only in train: {only_train[:5]}"
                              f"{' ...' if len(only_train) > 5 else ''}; only in val: {only_val[:5]}"
                              f"{' ...' if len(only_val) > 5 else ''}{fix}")
    index = {name: i for i, name in enumerate(classes["train"])}
    labels = {split: np.fromiter((index[r.split("/", 2)[1]] for r in rel), dtype=np.int32, count=len(rel))
              for split, rel in relative.items()}
    return Listing(str(root), classes["train"], relative, labels, "usable lists" if from_lists else "the folders")


def check_layout(root: str | Path | None) -> list[str]:
    """Checks a dataset root (one walk of its folders) and returns its class names (sorted, the label order).

    Raises:
        DataLayoutError: see ``list_dataset``.
    """
    return list_dataset(root, use_lists=False).classes


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
