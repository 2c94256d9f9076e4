"""``python -m data_pipelines.prepare`` on archives built like ILSVRC2012's, and ``python -m data_pipelines.verify``."""

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_pipelines import list_dataset
from data_pipelines.layout import usable_list
from data_pipelines.manifest import read_manifest
from helpers import run_cli

WNIDS = ["n01440764", "n01443537", "n01484850"]
VAL_TRUTH = [2, 1, 3, 3, 1, 2, 1]  # ILSVRC2012 ids of val images 1..7


def jpeg_bytes(colour, size=(64, 48), fmt="JPEG", mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, fmt)
    return buf.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """ILSVRC2012_img_train.tar (a tar per class), ILSVRC2012_img_val.tar (flat) and the devkit, in miniature."""
    folder = tmp_path_factory.mktemp("archives")
    with tarfile.open(folder / "train.tar", "w") as outer:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(3):
                    add(tar, f"{wnid}_{i}.JPEG", jpeg_bytes((80 * c, 40, 200)))
            add(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(folder / "val.tar", "w") as tar:
        for i in range(len(VAL_TRUTH)):
            add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg_bytes((10, 20 * i, 30)))
    # meta.mat: the 1000 leaves have ids 1..1000 and no children; inner nodes of the hierarchy follow
    synsets = np.array([(i + 1, w, f"class {i}", 0) for i, w in enumerate(WNIDS)] + [(1001, "n00001740", "entity", 3)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"synsets": synsets})
    with tarfile.open(folder / "devkit.tar.gz", "w:gz") as tar:
        add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", mat.getvalue())
        add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            "".join(f"{i}\n" for i in VAL_TRUTH).encode())
    return folder


def prepare(archives, out):
    return run_cli("data_pipelines.prepare", "imagenet", "--train-tar", str(archives / "train.tar"), "--val-tar",
                   str(archives / "val.tar"), "--devkit", str(archives / "devkit.tar.gz"), "--out", str(out),
                   cwd=archives, timeout=120)


def test_prepare_writes_the_folder_layout_and_resumes(archives, tmp_path):
    out = tmp_path / "imagenet"
    first = prepare(archives, out)
    assert first.returncode == 0, first.stderr
    assert "3 train classes and 7 val images written; next: python -m data_pipelines.verify" in first.stdout
    assert sorted(p.name for p in (out / "train").iterdir()) == WNIDS
    assert sorted(p.name for p in (out / "train" / WNIDS[1]).iterdir()) == [f"{WNIDS[1]}_{i}.JPEG" for i in range(3)]
    for i, wnid_id in enumerate(VAL_TRUTH):
        assert (out / "val" / WNIDS[wnid_id - 1] / f"ILSVRC2012_val_{i + 1:08d}.JPEG").is_file()
    # interrupted: one class and one val image missing, and a half-unpacked class left behind
    for p in (out / "train" / WNIDS[2]).iterdir():
        p.unlink()
    (out / "train" / WNIDS[2]).rmdir()
    (out / "val" / WNIDS[0] / "ILSVRC2012_val_00000002.JPEG").unlink()
    (out / "train" / f".{WNIDS[2]}-leftover").mkdir()
    second = prepare(archives, out)
    assert second.returncode == 0 and ("1 train classes and 1 val images written now; the rest of the 3 train "
                                       "classes and 7 val images were there from an earlier, interrupted run"
                                       in second.stdout), second.stdout
    listing = list_dataset(out)
    assert listing.classes == WNIDS and len(listing.files["val"]) == 7 and len(listing.files["train"]) == 9


def test_prepare_never_writes_into_a_folder_it_did_not_make(archives, tmp_path):
    from test_data_pipelines import snapshot

    theirs = tmp_path / "photos"
    (theirs / "train").mkdir(parents=True)
    (theirs / "train" / "holiday.JPEG").write_bytes(jpeg_bytes((1, 2, 3)))
    before = snapshot(theirs)
    result = prepare(archives, theirs)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: --out {theirs} already exists and was not made by this command" in result.stderr
    assert snapshot(theirs) == before
    empty = tmp_path / "empty"  # an empty folder made for it is fine
    empty.mkdir()
    assert prepare(archives, empty).returncode == 0 and read_manifest(empty)["complete"] is True


def test_prepare_names_a_wrong_archive(archives, tmp_path):
    result = run_cli("data_pipelines.prepare", "imagenet", "--train-tar", str(archives / "train.tar"), "--val-tar",
                     str(archives / "val.tar"), "--devkit", str(archives / "val.tar"), "--out", str(tmp_path),
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert f"error: --devkit {archives / 'val.tar'} has no data/ILSVRC2012_validation_ground_truth.txt" in result.stderr


@pytest.fixture
def damaged(tmp_path):
    """An ImageNet-layout folder with ImageNet's oddities and some broken files."""
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                (root / split / c / f"{i}.JPEG").write_bytes(jpeg_bytes((100, 50 * i, 20)))
    (root / "train" / "a" / "png.JPEG").write_bytes(jpeg_bytes((1, 2, 3), fmt="PNG"))
    (root / "train" / "a" / "cmyk.JPEG").write_bytes(jpeg_bytes((1, 2, 3, 4), mode="CMYK"))
    (root / "train" / "b" / "grey.JPEG").write_bytes(jpeg_bytes(128, mode="L"))
    (root / "train" / "b" / "truncated.JPEG").write_bytes(jpeg_bytes((9, 9, 9), size=(300, 200))[:400])
    (root / "val" / "a" / "empty.JPEG").write_bytes(b"")
    (root / "val" / "b" / "text.JPEG").write_bytes(b"<html>not an image</html>")
    return root


def test_verify_prints_a_few_notes_of_each_kind_and_counts_the_rest():
    from data_pipelines.verify import note_lines

    notes = [(f"/d/{i}.png", "grey") for i in range(5)] + [("/d/x.JPEG", "a PNG file named .JPEG")]
    assert note_lines(notes) == ["note: /d/0.png: grey (usable)", "note: /d/1.png: grey (usable)",
                                 "note: /d/2.png: grey (usable)", "note: and 2 more images: grey (usable)",
                                 "note: /d/x.JPEG: a PNG file named .JPEG (usable)"]


def test_verify_reports_unusable_files_and_lists_the_usable(damaged):
    from test_data_pipelines import snapshot

    before = snapshot(damaged)
    result = run_cli("data_pipelines.verify", str(damaged), "--workers", "2", cwd=damaged, timeout=120)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    for bad, why in (("train/b/truncated.JPEG", "not a readable image"), ("val/a/empty.JPEG", "empty file"),
                     ("val/b/text.JPEG", "not a readable image")):
        assert f"unusable: {damaged / bad}: {why}" in out
    for odd, note in (("train/a/png.JPEG", "a PNG file named .JPEG"), ("train/a/cmyk.JPEG", "CMYK colour"),
                      ("train/b/grey.JPEG", "grey")):
        assert f"note: {damaged / odd}: {note} (usable)" in out
    assert "15 usable images, 3 unusable, 3 notes" in out
    assert snapshot(damaged) == before  # the data folder is only read: the lists go to the cache
    assert usable_list(damaged, "train").is_relative_to(Path(os.environ["HOME"]) / ".cache" / "convnet-classics")
    listed = usable_list(damaged, "train").read_text().split()
    assert len(listed) == 9 and "train/b/truncated.JPEG" not in listed and "train/a/cmyk.JPEG" in listed
    listing = list_dataset(damaged)  # from the lists: the unusable files are gone
    assert listing.source == "usable lists" and len(listing.files["train"]) == 9
    assert len(listing.files["val"]) == 6 and listing.labels["val"].tolist() == [0, 0, 0, 1, 1, 1]


def test_a_broken_image_stops_training_with_its_name_and_verify_fixes_it(damaged):
    args = ["model=lenet5", "trainer.max_epochs=1", "data.batch_size=4", "logger=none", "data.num_classes=2",
            "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0"]
    broken = run_cli("trainer", *args, cwd=damaged.parent, env={"IMAGENET_ROOT": str(damaged)}, timeout=300)
    assert broken.returncode == 1
    assert f"error: cannot read or decode {damaged}/train/b/truncated.JPEG; run `python -m data_pipelines.verify" \
        in broken.stderr, broken.stderr[-2000:]
    assert "Traceback" not in broken.stderr
    run_cli("data_pipelines.verify", str(damaged), cwd=damaged, timeout=120)
    fixed = run_cli("trainer", *args, cwd=damaged.parent, env={"IMAGENET_ROOT": str(damaged)}, timeout=300)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "lenet5 / single / imagenet" in fixed.stdout
