"""The embedded digits, the folder-layout checks and the DataModule's batches."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from data_pipelines import DataLayoutError, DigitsDataModule, ImageFolderDataModule, check_layout, write_digits


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
    (lambda r: make_layout(r, empty=("b",)), "1 empty class folder(s) with no .jpeg/.jpg/.png images: {r}/train/b"),
    (lambda r: make_layout(r, val=("a", "c")), "train and val class folders under {r} differ: only in train: ['b']; "
                                               "only in val: ['c']"),
    (lambda r: (r / "train").mkdir(parents=True), "{r}/train has no class folders"),
])
def test_bad_layouts_name_the_path_and_the_expected_layout(tmp_path, setup, message):
    root = tmp_path / "imagenet"
    setup(root)
    with pytest.raises(DataLayoutError) as err:
        check_layout(root)
    assert message.format(r=root) in str(err.value)


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


def test_bench_quick_mode_prints_its_json_last(tmp_path):
    from conftest import run_cli

    result = run_cli("data_pipelines.bench", "--data", str(tmp_path / "jpegs"), "--images", "24", "--runs", "1",
                     "--batch-size", "8", "--pass-images", "40", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("dali_img_s", "torchvision_img_s", "decode_only_img_s", "decode_resize_img_s",
                "dali_epoch_start_s", "torchvision_epoch_start_s"):
        assert figures[key] > 0, key
    assert figures["ratio"] == pytest.approx(figures["dali_img_s"] / figures["torchvision_img_s"], rel=0.02)
    assert figures["dali_of_decode"] == pytest.approx(figures["dali_img_s"] / figures["decode_only_img_s"], rel=0.02)
    assert figures["images"] == 24 and figures["pass_images"] == 40 and 50 < figures["mean_kb"] < 200
    assert "24 JPEGs in" in result.stdout and "read 40 times a pass" in result.stdout
    assert "decode_resize:" in result.stdout
