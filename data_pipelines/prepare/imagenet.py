"""``python -m data_pipelines.prepare imagenet``: the official ILSVRC2012 archives to the folder layout.

    python -m data_pipelines.prepare imagenet --train-tar ILSVRC2012_img_train.tar \\
        --val-tar ILSVRC2012_img_val.tar --devkit ILSVRC2012_devkit_t12.tar.gz --out /datasets/imagenet

The train archive holds one tar per class (``n01440764.tar``), unpacked to ``OUT/train/<wnid>/``.
The val archive holds 50,000 flat images; the devkit's ground truth (ILSVRC2012 ids, mapped to
WNIDs by its ``meta.mat``) sorts them into ``OUT/val/<wnid>/``. Resumable: a class folder appears
only once complete (unpacked beside it and renamed), each val image is written under a temporary
name and renamed, and a second run skips whatever is already there. OUT must be new, empty, or
an earlier ``prepare imagenet`` output (its ``convnet-classics.json`` says so): any other folder is
refused before anything is written. Then run
``python -m data_pipelines.verify OUT``.
"""

import io
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from rich.progress import Progress

from ..layout import IMAGE_SUFFIXES
from ..manifest import NotOursError, claim, mark_complete


class ArchiveError(ValueError):
    """An archive that is missing or is not the one the option names."""


def _open_tar(path: str | Path, what: str) -> tarfile.TarFile:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArchiveError(f"{what} {path} does not exist")
    try:
        return tarfile.open(path, mode="r|*")  # streamed: 140 GB are read once, front to back
    except tarfile.TarError as e:
        raise ArchiveError(f"{what} {path} is not a tar archive ({e})") from e


def read_devkit(path: str | Path) -> list[str]:
    """The WNID of each val image, in file order (ILSVRC2012_val_00000001 first), from the devkit archive."""
    import scipy.io

    ground_truth, meta = None, None
    with _open_tar(path, "--devkit") as tar:
        for member in tar:
            if member.name.endswith("data/ILSVRC2012_validation_ground_truth.txt"):
                ground_truth = tar.extractfile(member).read().decode().split()
            elif member.name.endswith("data/meta.mat"):
                meta = scipy.io.loadmat(io.BytesIO(tar.extractfile(member).read()), squeeze_me=True)["synsets"]
    if ground_truth is None or meta is None:
        raise ArchiveError(f"--devkit {path} has no data/ILSVRC2012_validation_ground_truth.txt and data/meta.mat; "
                           f"pass ILSVRC2012_devkit_t12.tar.gz")
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in meta if int(s["num_children"]) == 0}
    return [id_to_wnid[int(i)] for i in ground_truth]


def prepare_train(train_tar: str | Path, out: Path, progress: Progress) -> int:
    """Unpacks each class tar into ``out/train/<wnid>/``; returns the number of classes written now."""
    written = 0
    task = progress.add_task("train classes", total=1000)
    with _open_tar(train_tar, "--train-tar") as outer:
        for member in outer:
            wnid = Path(member.name).stem
            if not member.name.endswith(".tar"):
                continue
            target = out / "train" / wnid
            if not target.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{wnid}-", dir=target.parent))
                try:
                    with tarfile.open(fileobj=outer.extractfile(member), mode="r|*") as inner:
                        for image in inner:
                            if image.isfile() and image.name.lower().endswith(IMAGE_SUFFIXES):
                                (tmp / Path(image.name).name).write_bytes(inner.extractfile(image).read())
                    os.replace(tmp, target)
                    written += 1
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            progress.advance(task)
    return written


def prepare_val(val_tar: str | Path, wnids: list[str], out: Path, progress: Progress) -> int:
    """Writes each val image into ``out/val/<wnid>/``; returns the number of images written now."""
    written = 0
    task = progress.add_task("val images", total=len(wnids))
    with _open_tar(val_tar, "--val-tar") as tar:
        for member in tar:
            name = Path(member.name).name
            if not (member.isfile() and name.startswith("ILSVRC2012_val_")):
                continue
            index = int(Path(name).stem.rsplit("_", 1)[1]) - 1
            if not 0 <= index < len(wnids):
                raise ArchiveError(f"{name} has no ground truth in the devkit ({len(wnids)} val labels)")
            target = out / "val" / wnids[index] / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{name}.tmp")
                tmp.write_bytes(tar.extractfile(member).read())
                os.replace(tmp, target)
                written += 1
            progress.advance(task)
    return written


def register(commands) -> None:
    """Adds ``prepare imagenet`` to the command line."""
    parser = commands.add_parser("imagenet", help="the official ILSVRC2012 archives to ROOT/{train,val}/<wnid>/",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-tar", required=True, help="ILSVRC2012_img_train.tar")
    parser.add_argument("--val-tar", required=True, help="ILSVRC2012_img_val.tar")
    parser.add_argument("--devkit", required=True, help="ILSVRC2012_devkit_t12.tar.gz")
    parser.add_argument("--out", required=True, help="the dataset folder to write (new, empty, or this command's)")
    parser.set_defaults(run=run)


def run(args) -> int:
    out = Path(args.out).expanduser()
    try:
        wnids = read_devkit(args.devkit)
        claim(out, "imagenet")
        with Progress() as progress:
            classes = prepare_train(args.train_tar, out, progress)
            images = prepare_val(args.val_tar, wnids, out, progress)
        mark_complete(out)
    except (ArchiveError, NotOursError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from . import written_now

    totals = {"train classes": sum(1 for p in (out / "train").iterdir() if p.is_dir() and not p.name.startswith(".")),
              "val images": sum(1 for _ in (out / "val").rglob("*.JPEG"))}
    print(f"{out}: {written_now({'train classes': classes, 'val images': images}, totals)}; next: python -m "
          f"data_pipelines.verify {out}")
    return 0
