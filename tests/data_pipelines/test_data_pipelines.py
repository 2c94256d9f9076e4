"""The embedded digits, the folder-layout checks and the DataModule's batches."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_pipelines import DataLayoutError, DigitsDataModule, ImageFolderDataModule, check_layout, write_digits
from data_pipelines.manifest import NotOursError, read_manifest
from helpers import run_cli


def count(folder):
    return sum(len(files) for _, _, files in os.walk(folder))


def test_digits_are_written_once_in_imagenet_layout(digits_cache):
    root = digits_cache / "digits"
    assert check_layout(root) == [str(d) for d in range(10)]
    assert count(root / "train") == 1437 and count(root / "val") == 360
    assert all(count(root / "val" / str(d)) >= 35 for d in range(10))  # stratified split
    img = Image.open(next((root / "train" / "3").iterdir()))
    assert img.size == (8, 8) and img.mode == "L"
    assert np.asarray(img).max() <= 255
    before = {p: p.stat().st_mtime_ns for p in (root / "val" / "0").iterdir()}
    write_digits(root)  # cached: nothing is rewritten
    assert {p: p.stat().st_mtime_ns for p in (root / "val" / "0").iterdir()} == before


def test_digits_split_is_fixed(tmp_path, digits_cache):
    other = write_digits(tmp_path / "digits")
    assert sorted(p.name for p in (other / "val" / "7").iterdir()) == \
        sorted(p.name for p in (digits_cache / "digits" / "val" / "7").iterdir())


def make_layout(root, train=("a", "b"), val=("a", "b"), empty=()):
    for split, classes in (("train", train), ("val", val)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            if c not in empty:
                Image.new("RGB", (40, 30), (10, 200, 30)).save(root / split / c / "x.JPEG")
    return root


@pytest.mark.parametrize("setup, message", [
    (lambda r: None, "data root {r} does not exist; expected ROOT/train/<class>/<image>"),
    (lambda r: make_layout(r, val=()), "{r}/val does not exist"),
    (lambda r: make_layout(r, empty=("b",)), "1 class folder(s) with no .jpeg/.jpg/.png images: {r}/train/b"),
    (lambda r: make_layout(r, val=("a", "c")), "train and val class folders under {r} differ: only in train: ['b']; "
                                               "only in val: ['c']"),
    (lambda r: (r / "train").mkdir(parents=True), "{r}/train has no class folders"),
])
@pytest.mark.parametrize("check", ["listing", "before the run"])
def test_bad_layouts_name_the_path_and_the_expected_layout(tmp_path, setup, message, check):
    """The DataModule's listing and the check before a run starts refuse the same folders with the same words."""
    from data_pipelines.layout import list_before_start

    root = tmp_path / "imagenet"
    setup(root)
    with pytest.raises(DataLayoutError) as err:
        check_layout(root) if check == "listing" else list_before_start(root)
    assert message.format(r=root) in str(err.value)


def test_nothing_usable_after_verify_says_what_to_do(tmp_path):
    """verify found every file unreadable: its lists are empty, and the listing says so instead of DALI's
    'no images to read' traceback."""
    from data_pipelines.layout import list_dataset, write_usable_list

    root = make_layout(tmp_path / "imagenet")
    for split in ("train", "val"):
        write_usable_list(root, split, [])
    with pytest.raises(DataLayoutError) as err:
        list_dataset(root)
    assert f"{root} has no usable images in train and val: verify's lists" in str(err.value)
    assert f"run python -m data_pipelines.verify {root} again" in str(err.value)


def test_one_class_is_refused_with_what_a_classifier_needs(tmp_path):
    root = make_layout(tmp_path / "imagenet", train=("a",), val=("a",))
    with pytest.raises(DataLayoutError, match=r"has 1 class folder\(s\): a classifier needs at least 2"):
        ImageFolderDataModule(root=str(root), num_classes=1).setup()


def test_unset_root_says_how_to_set_it():
    with pytest.raises(DataLayoutError, match="set data.root=/path/to/imagenet or the IMAGENET_ROOT"):
        ImageFolderDataModule(root=None, num_classes=1000).setup()


def test_class_count_must_match_the_model(tmp_path):
    dm = ImageFolderDataModule(root=str(make_layout(tmp_path / "d")), num_classes=1000)
    with pytest.raises(DataLayoutError, match="has 2 class folders but the model is configured for "
                                              "data.num_classes=1000; set data.num_classes=2"):
        dm.setup()


def test_digits_batches_for_lenet_and_alexnet(digits_cache):
    dm = DigitsDataModule(root=str(digits_cache / "digits"), num_classes=10, batch_size=16, image_size=32,
                          channels=1)
    dm.prepare_data()
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert len(dm.train_dataloader()) == 90 and len(dm.val_dataloader()) == 23
    xv, _ = next(iter(dm.val_dataloader()))
    background = xv.min()  # a digit's blank pixels, normalised
    assert torch.all(xv[:, :, :2, :] == background) and torch.all(xv[:, :, :, -2:] == background)  # 2 px border
    assert (xv > background).any()
    rgb = DigitsDataModule(root=str(digits_cache / "digits"), num_classes=10, batch_size=4, image_size=224,
                           channels=3)
    rgb.setup()
    assert next(iter(rgb.val_dataloader()))[0].shape == (4, 3, 224, 224)


def test_imagenet_layout_batches(tmp_path):
    dm = ImageFolderDataModule(root=str(make_layout(tmp_path / "d")), num_classes=2, batch_size=2, image_size=24,
                               resize_size=28, num_workers=1)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 24, 24) and sorted(y.tolist()) == [0, 1]


def test_training_crops_can_be_smaller_than_validations(tmp_path, digits_cache):
    """torchvision's V2 recipe: train at 176, validate at 224 of a shorter side of 232 (here 16 / 24 of 28)."""
    from helpers import make_cfg
    from trainer.config_check import ConfigValueError, check_values

    dm = ImageFolderDataModule(root=str(make_layout(tmp_path / "d")), num_classes=2, batch_size=2, image_size=24,
                               resize_size=28, num_workers=1, preset="inception", train_image_size=16)
    dm.setup()
    (x, _), (xv, _) = next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))
    assert x.shape == (2, 3, 16, 16) and xv.shape == (2, 3, 24, 24)
    same = ImageFolderDataModule(root=str(tmp_path / "d"), num_classes=2, batch_size=2, image_size=24,
                                 resize_size=28, num_workers=1, preset="inception")
    same.setup()
    assert next(iter(same.train_dataloader()))[0].shape == (2, 3, 24, 24)  # null: image_size
    cfg = make_cfg(tmp_path, digits_cache, "model=resnet18", "data.train_image_size=176")
    assert (cfg.data.train_image_size, cfg.data.image_size) == (176, 224)
    with pytest.raises(ConfigValueError, match="data.train_image_size=4 is not allowed"):
        check_values(make_cfg(tmp_path, digits_cache, "data.train_image_size=4"))


def test_dense_views_are_each_whole_image_at_each_test_scale(tmp_path):
    """protocol=dense|multiscale: every image whole, its shorter side at each scale, each of its own size (not the
    padded batch's), normalised as the centre crop is."""
    root = tmp_path / "d"
    for split in ("train", "val"):
        for name, size in (("a", (60, 40)), ("b", (30, 50))):  # (width, height): landscape and portrait
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", size, (200, 100, 50)).save(root / split / name / "x.png")
    dm = ImageFolderDataModule(root=str(root), num_classes=2, batch_size=2, image_size=24, resize_size=28,
                               num_workers=1, eval_protocol="multiscale", eval_scales=[20, 32])
    dm.setup()
    views, labels = next(iter(dm.val_dataloader()))
    shapes = {int(y): [tuple(v.shape) for v in image] for image, y in zip(views, labels)}
    assert shapes == {0: [(3, 20, 30), (3, 32, 48)], 1: [(3, 33, 20), (3, 53, 32)]}  # (C, H, W)
    centre = ImageFolderDataModule(root=str(root), num_classes=2, batch_size=2, image_size=24, resize_size=28,
                                   num_workers=1)
    centre.setup()
    crop = next(iter(centre.val_dataloader()))[0][0]
    assert torch.allclose(views[0][0][:, 5, 5], crop[:, 5, 5], atol=1e-4)  # the same normalisation
    with pytest.raises(Exception, match=r"data.eval_protocol=multiscale averages over several test scales"):
        ImageFolderDataModule(root=str(root), num_classes=2, eval_protocol="multiscale")


def test_bench_quick_mode_prints_its_json_last(tmp_path):
    result = run_cli("data_pipelines.bench", "--images", "24", "--runs", "1", "--batch-size", "8", "--pass-images",
                     "40", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("dali_img_s", "torchvision_img_s", "decode_only_img_s", "decode_resize_img_s", "prepared_dali_img_s",
                "prepared_torchvision_img_s", "prepared_decode_only_img_s", "dali_epoch_start_s",
                "torchvision_epoch_start_s", "prepared_dali_epoch_start_s"):
        assert figures[key] > 0, key
    assert figures["prepared_ratio"] == pytest.approx(figures["prepared_dali_img_s"] / figures["torchvision_img_s"],
                                                      rel=0.02)
    assert figures["prepared_of_decode"] == pytest.approx(
        figures["prepared_dali_img_s"] / figures["prepared_decode_only_img_s"], rel=0.02)
    prepared = next((Path(os.environ["HOME"]) / ".cache" / "convnet-classics" / "bench-prepared").iterdir())
    assert read_manifest(prepared)["size"] == 256 and count(prepared) == 24 + 1  # the images and the manifest
    assert all(Image.open(p).size == (256, 256) for p in prepared.rglob("*.JPEG"))
    assert figures["ratio"] == pytest.approx(figures["dali_img_s"] / figures["torchvision_img_s"], rel=0.02)
    assert figures["dali_of_decode"] == pytest.approx(figures["dali_img_s"] / figures["decode_only_img_s"], rel=0.02)
    assert figures["images"] == 24 and figures["pass_images"] == 40 and 50 < figures["mean_kb"] < 200
    generated = Path(os.environ["HOME"]) / ".cache" / "convnet-classics" / "bench-jpegs" / "24-train-32-val"
    assert f"24 JPEGs in {generated}" in result.stdout and "read 40 times a pass" in result.stdout
    assert read_manifest(generated)["kind"] == "bench-jpegs" and count(generated / "train") == 24
    assert check_layout(generated) == [f"c{i}" for i in range(8)] and count(generated / "val") == 32
    assert "decode_resize:" in result.stdout


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder``: its size and content hash (None for folders)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_bench_only_reads_a_users_data(tmp_path):
    """The bench once replaced a real ImageNet train folder by its own images: --data is read, never written."""
    from data_pipelines.bench import natural_image

    root = tmp_path / "imagenet"
    rng = np.random.default_rng(1)
    for i in range(12):  # real-looking JPEGs in ImageNet's layout, no marker of this project's anywhere
        path = root / "train" / f"n0{i % 3}" / f"n0{i % 3}_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(natural_image(rng, width=300, height=200)).save(path, quality=80)
    (root / "val").mkdir()
    (root / "notes.txt").write_text("my notes\n")
    before = snapshot(root)
    args = ["--runs", "1", "--batch-size", "4", "--pass-images", "8", "--variants", "dali,prepared_dali"]
    for data in (root, root / "train"):  # a data root, and a folder of class folders
        result = run_cli("data_pipelines.bench", "--data", str(data), *args, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        assert figures["images"] == 12 and figures["prepared_dali_img_s"] > 0 and "torchvision_img_s" not in figures
        assert snapshot(root) == before
    assert not (Path(os.environ["HOME"]) / ".cache" / "convnet-classics" / "bench-jpegs").exists()

    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "train" / "a" / "readme.txt").write_text("no images here\n")
    before = snapshot(empty)
    refused = run_cli("data_pipelines.bench", "--data", str(empty), *args, cwd=tmp_path, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: --data {empty} holds no .jpeg/.jpg/.png images" in refused.stderr
    assert snapshot(empty) == before


def test_the_digits_cache_never_replaces_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "data" / "digits"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "thesis.tex").write_text("precious\n")
    before = snapshot(mine)
    with pytest.raises(NotOursError, match=f"data.root {mine} exists but is not the digits folder this project "
                                           f"writes .* it was left as it is"):
        write_digits(mine)
    assert snapshot(mine) == before
    assert [p.name for p in mine.parent.iterdir()] == ["digits"]  # no half-built folder left beside it
