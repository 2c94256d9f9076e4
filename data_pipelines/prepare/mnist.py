"""``python -m data_pipelines.prepare mnist --source DIR --out DIR``: LeNet-5's data set in the folder layout.

    python -m data_pipelines.prepare mnist --source ~/Downloads/mnist --out ~/.cache/convnet-classics/mnist
    python -m data_pipelines.prepare mnist --download --out ~/.cache/convnet-classics/mnist

Reads LeCun's four IDX files (gzipped or not) from ``--source``, checks them (magic numbers 2051
and 2049, 60,000 and 10,000 images and labels, 28x28) and writes ``OUT/train/<digit>/<index>.png``
and ``OUT/val/<digit>/<index>.png``: the test set is the validation set, as LeNet-5's 0.95 % was
measured on it. The images are written exactly as stored (8-bit grey, 28x28); ``data=mnist`` places
them in the 32x32 field the network reads. Resumable (each split is written beside its final
folder and renamed; a finished split is skipped), the source is only read. ``--download`` fetches
the files with torchvision's MNIST downloader (its mirrors) into ``OUT/.download``; offline it says
which files to fetch by hand.
"""

import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import Progress

from ..layout import DataLayoutError
from ..manifest import NotOursError, claim, mark_complete

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000)}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror


class MnistFileError(DataLayoutError):
    """An IDX file that is missing or is not what its name says."""


def _find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise MnistFileError(f"{source} has no {stem}.gz (or {stem}); it needs LeCun's four MNIST files: "
                         f"{', '.join(f'{s}.gz' for split in FILES.values() for s in split[:2])} "
                         f"(e.g. from {MIRROR}), or pass --download")


def read_idx(path: Path, magic: int, count: int) -> np.ndarray:
    """The array an IDX file holds, after checking its magic number, count and (for images) 28x28 size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise MnistFileError(f"{path} cannot be read ({e}); fetch it again") from e
    header = np.frombuffer(data[:8], dtype=">i4") if len(data) >= 8 else np.array([])
    if len(header) < 2 or header[0] != magic:
        found = int(header[0]) if len(header) else None
        raise MnistFileError(f"{path} is not an MNIST {'image' if magic == IMAGES_MAGIC else 'label'} file "
                             f"(magic number {found}, expected {magic})")
    if header[1] != count:
        raise MnistFileError(f"{path} holds {header[1]:,} entries, expected {count:,}")
    if magic == IMAGES_MAGIC:
        rows, cols = np.frombuffer(data[8:16], dtype=">i4")
        if (rows, cols) != (28, 28) or len(data) != 16 + count * 784:
            raise MnistFileError(f"{path} holds {rows}x{cols} images ({len(data):,} bytes), expected 28x28")
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 28, 28)
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if len(labels) != count or labels.max() > 9:
        raise MnistFileError(f"{path} holds {len(labels):,} labels up to {labels.max()}, expected {count:,} digits")
    return labels


def write_split(images: np.ndarray, labels: np.ndarray, target: Path, progress: Progress, split: str) -> bool:
    """Writes one split as ``target/<digit>/<index>.png`` (beside it, then renamed); False if already there."""
    if target.is_dir():
        return False
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for digit in range(10):
            (tmp / str(digit)).mkdir()
        task = progress.add_task(f"writing {split}", total=len(images))
        for index, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image, mode="L").save(tmp / str(label) / f"{index:05d}.png")
            progress.advance(task)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def download(out: Path) -> Path:
    """LeCun's files through torchvision's downloader (its mirrors, checked by md5), into ``out/.download``."""
    from torchvision.datasets import MNIST

    folder = out / ".download"
    try:
        MNIST(str(folder), train=True, download=True)
    except Exception as e:  # urllib's errors and torchvision's RuntimeError("Error downloading ...")
        raise MnistFileError(f"--download could not fetch MNIST ({type(e).__name__}: {str(e).splitlines()[0]}); this "
                             "machine may be offline. Fetch "
                             f"{', '.join(f'{s}.gz' for v in FILES.values() for s in v[:2])}"
                             f" by hand (e.g. from {MIRROR}) into a folder and pass it as --source") from e
    return folder / "MNIST" / "raw"


def prepare_mnist(out: Path, source: Path | None = None) -> dict:
    """Writes the folder layout (see the module docstring); returns the images written now per split."""
    out = Path(out).expanduser()
    if source is None:
        claim(out, "mnist")
        source = download(out)
    source = Path(source).expanduser()
    arrays = {split: (read_idx(_find(source, images), IMAGES_MAGIC, count),
                      read_idx(_find(source, labels), LABELS_MAGIC, count))
              for split, (images, labels, count) in FILES.items()}  # everything checked before anything is written
    claim(out, "mnist")
    written = {}
    with Progress() as progress:
        for split, (images, labels) in arrays.items():
            written[split] = len(images) if write_split(images, labels, out / split, progress, split) else 0
    mark_complete(out, source=str(source), train=len(arrays["train"][0]), val=len(arrays["val"][0]))
    return written


def register(commands) -> None:
    """Adds ``prepare mnist`` to the command line."""
    parser = commands.add_parser("mnist", help="LeCun's MNIST files to ROOT/{train,val}/<digit>/ (val: the test set)",
                                 description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", help="the folder with the four IDX files (gzipped or not; only read)")
    where.add_argument("--download", action="store_true", help="fetch them with torchvision's downloader")
    parser.add_argument("--out", required=True, help="the folder to write (new, empty, or this command's)")
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        written = prepare_mnist(Path(args.out), None if args.download else Path(args.source))
    except (MnistFileError, NotOursError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ..manifest import read_manifest
    from . import written_now

    manifest = read_manifest(args.out) or {}
    counts = {"train images": written["train"], "val (MNIST test) images": written["val"]}
    totals = {"train images": manifest.get("train", 0), "val (MNIST test) images": manifest.get("val", 0)}
    print(f"{args.out}: {written_now(counts, totals)}; train LeNet-5 on them: python -m trainer "
          f"experiment=lenet5_1998 data=mnist data.root={args.out}")
    return 0
