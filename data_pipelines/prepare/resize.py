"""``python -m data_pipelines.prepare resize SRC --out DST --size 256 [--square]``: the 2012 preprocessing, once.

Krizhevsky et al. downsampled every image once, before training, to 256x256 (the shorter side to
256, then the central 256x256 patch) and trained on random 224 crops and flips of those. This
writes such a copy of a data folder: every image of ``SRC/{train,val}/<class>/`` with its shorter
side resized to ``--size`` (bilinear, antialiased: Pillow's, as torchvision's ``Resize``), with
``--square`` its central square, stored as JPEG at ``--quality`` (90: docs/data.md, "AlexNet's
256x256 copy", measures what it costs), under the same relative name in DST. On such a copy the
``alexnet`` preset and both evaluation protocols are pure crops and flips: no resampling while
training (``data_pipelines.augment``, ``datamodule``), as in the paper.

The images read are SRC's usable list when ``verify`` wrote one, else every image in its class
folders; a file that cannot be decoded is reported and left out. All cores, a progress bar,
resumable (each image is written under a temporary name and renamed; a second run skips what is
there). SRC is only read. DST holds a manifest (``convnet-classics.json``: the source, size, square,
quality and counts) that the data module reads, and gets usable lists of its own.
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from rich.progress import Progress

from ..layout import DataLayoutError, list_dataset, write_usable_list
from ..manifest import NotOursError, claim, mark_complete

KIND = "resized"
DEFAULT_QUALITY = 90


def resize_image(src: str, dst: str, size: int, square: bool, quality: int) -> str | None:
    """Writes ``dst``, the image ``src`` at shorter side ``size`` (its central square with ``square``).

    Returns:
        None when written (or already there), else why ``src`` could not be read.
    """
    if os.path.exists(dst):
        return None
    try:
        with Image.open(src) as img:
            img = img.convert("L" if img.mode in ("L", "1") else "RGB")  # CMYK, palette, PNG named .JPEG: RGB
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    width, height = img.size
    scale = size / min(width, height)
    # the shorter side exactly `size`, the other in proportion
    img = img.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    if square:
        left, top = (img.width - size) // 2, (img.height - size) // 2
        img = img.crop((left, top, left + size, top + size))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{os.path.dirname(dst)}/.{os.path.basename(dst)}.tmp"
    img.save(tmp, "JPEG", quality=quality)  # Pillow's default chroma subsampling (4:2:0) below quality 95
    os.replace(tmp, dst)
    return None


def _resize_job(job: tuple) -> tuple[str, str | None]:
    return job[0], resize_image(*job)


def resize_dataset(src: str | Path, out: str | Path, size: int = 256, square: bool = False,
                   quality: int = DEFAULT_QUALITY, workers: int | None = None) -> dict:
    """Writes the resized copy (see the module docstring).

    Returns:
        ``{"written": n, "images": {split: count}, "unusable": [(path, why)]}``.

    Raises:
        DataLayoutError: SRC does not have the folder layout. NotOursError: DST is not new, empty or an
            earlier copy of SRC made with the same settings.
    """
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser()
    if out.resolve() == src or src in out.resolve().parents:
        raise NotOursError(f"--out {out} is inside SRC {src}; SRC is only read: give a folder outside it")
    listing = list_dataset(src)
    claim(out, KIND, source=str(src), size=size, square=square, quality=quality)
    samples = {split: [str(src / r) for r in relative] for split, relative in listing.files.items()}
    report = {"written": 0, "images": {}, "unusable": []}
    with Progress() as progress, ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for split, files in samples.items():
            task = progress.add_task(f"resizing {split}", total=len(files))
            jobs = [(f, str(out / os.path.relpath(f, src)), size, square, quality) for f in files]
            before = sum(os.path.exists(job[1]) for job in jobs)
            usable = []
            for path, problem in pool.map(_resize_job, jobs, chunksize=64):
                progress.advance(task)
                if problem:
                    report["unusable"].append((path, problem))
                else:
                    usable.append(os.path.relpath(path, src))
            report["written"] += len(usable) - before
            report["images"][split] = len(usable)
            write_usable_list(out, split, usable)
    mark_complete(out, images=report["images"], unusable=len(report["unusable"]))
    return report


def register(commands) -> None:
    """Adds ``prepare resize`` to the command line."""
    parser = commands.add_parser("resize", help="a copy at shorter side --size (the 2012 preprocessing), once",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="a data folder with train/<class>/* and val/<class>/* (only read)")
    parser.add_argument("--out", required=True, help="the copy to write (new, empty, or this command's)")
    parser.add_argument("--size", type=int, default=256, help="the shorter side (default 256, the paper's)")
    parser.add_argument("--square", action="store_true", help="keep the central size x size square (the paper's)")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                        help=f"JPEG quality, 1-100 (default {DEFAULT_QUALITY}; docs/data.md measures the cost)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.size < 1 or not 1 <= args.quality <= 100:
        print(f"error: --size must be positive and --quality 1-100, got {args.size} and {args.quality}",
              file=sys.stderr)
        return 2
    try:
        report = resize_dataset(args.src, args.out, args.size, args.square, args.quality, args.workers)
    except (DataLayoutError, NotOursError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, problem in report["unusable"]:
        print(f"unusable: {path}: {problem} (left out)")
    counts = ", ".join(f"{n:,} {split}" for split, n in report["images"].items())
    print(f"{args.out}: {counts} images at shorter side {args.size}{' (square)' if args.square else ''}, JPEG quality "
          f"{args.quality}; {report['written']:,} written now; {len(report['unusable'])} unusable left out. "
          "Train on it: "
          f"python -m trainer data=imagenet data.root={args.out}")
    return 1 if report["unusable"] else 0
