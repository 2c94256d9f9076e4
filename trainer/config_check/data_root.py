"""The data folder a run names, checked before its run folder and W&B run exist."""

from omegaconf import DictConfig, OmegaConf

from .rules import ConfigValueError


def check_data_root(cfg: DictConfig, first_process: bool = True) -> None:
    """A data folder that is not there or not in the expected layout, found before the run folder and the
    W&B run exist (the embedded digits are made on first use, so their folder may be missing or empty).
    The layout (class folders holding images, the same classes in train and val) is listed by the first
    process only, and that listing is the job's one (``layout.list_before_start``): on a network file system
    every process listing ImageNet's 2,000 folders, or one process twice, would cost minutes."""
    from pathlib import Path

    from data_pipelines.layout import DataLayoutError, check_class_count, list_before_start

    if OmegaConf.select(cfg, "data.name", default=None) == "digits":
        check_digits_root(cfg)
        return
    root = OmegaConf.select(cfg, "data.root", default=None)
    if root is None:
        raise ConfigValueError("data.root is not set: set data.root=/path/to/imagenet or the IMAGENET_ROOT "
                               "environment variable (docs/data.md)")
    if not Path(str(root)).expanduser().exists():
        how = OmegaConf.select(cfg, "data.how_to_make", default=None)
        raise ConfigValueError(f"data.root={root} does not exist; " + (
            f"make it with: {how}" if how else "expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> "
                                               "(docs/data.md, \"Getting ImageNet ready\")"))
    if first_process:
        try:
            listing = list_before_start(str(root))
            check_class_count(root, listing.classes, int(cfg.data.num_classes))
        except DataLayoutError as e:
            raise ConfigValueError(f"data.root={root}: {e}") from None


def check_digits_root(cfg: DictConfig) -> None:
    """``data.root=<folder>`` with the embedded digits (``data=digits``, the default without ``IMAGENET_ROOT``):
    almost always ImageNet was meant. The digits' own folder (``paths.cache_dir``/digits, or one the digits were
    written to before) is accepted; anything else is refused before anything is written, with the fix."""
    from pathlib import Path

    root = Path(str(cfg.data.root)).expanduser()
    if root == Path(str(cfg.paths.cache_dir)).expanduser() / "digits" or (root / "convnet-classics.json").is_file():
        return
    if root.is_file():
        what = "is a file"
    elif root.is_dir() and (root / "train").is_dir() and (root / "val").is_dir():
        what = "holds a data set in ImageNet's layout (train/, val/)"
    elif root.exists():
        what = "is a folder that does not hold the digits"
    else:
        what = "does not exist"
    raise ConfigValueError(
        f"data.root={cfg.data.root} {what}, but the data set is the embedded digits (data=digits: no data set was "
        f"named and IMAGENET_ROOT is not set, or data=digits was given), which keep their images in "
        f"{cfg.paths.cache_dir}/digits. For ImageNet or a data set in its layout: data=imagenet data.root="
        f"{cfg.data.root}; for the digits in another place: CONVNET_CACHE=<folder>")
