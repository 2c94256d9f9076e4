"""``python -m data_pipelines.prepare resize``: the 2012 preprocessing once, and the pure-crop data path it allows."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_pipelines import snapshot

from data_pipelines import ImageFolderDataModule, list_dataset
from data_pipelines.augment import MEAN_PIXEL_2012
from data_pipelines.bench import natural_image
from data_pipelines.dali_loader import _image_pipeline
from data_pipelines.layout import DataConfigError, usable_list
from data_pipelines.manifest import read_manifest
from helpers import run_cli

SIZES = [(500, 375), (375, 500), (300, 200), (640, 480), (256, 320), (210, 180)]  # landscape, portrait, small


@pytest.fixture
def originals(tmp_path):
    """ImageNet-layout JPEGs of various sizes (one smaller than 256, upsampled as the paper did), a grey one,
    a CMYK one, a PNG named .JPEG and a truncated file."""
    root = tmp_path / "originals"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, cls in enumerate(("n01", "n02")):
            for i, (w, h) in enumerate(SIZES):
                path = root / split / cls / f"{cls}_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(natural_image(rng, width=w, height=h)).save(path, quality=90)
    Image.fromarray(natural_image(rng, 320, 300)).convert("L").save(root / "train" / "n01" / "grey.JPEG")
    Image.fromarray(natural_image(rng, 320, 300)).convert("CMYK").save(root / "train" / "n02" / "cmyk.JPEG")
    Image.fromarray(natural_image(rng, 320, 300)).save(root / "train" / "n02" / "png.JPEG", format="PNG")
    (root / "val" / "n01" / "truncated.JPEG").write_bytes((root / "val" / "n01" / "n01_0.JPEG").read_bytes()[:500])
    return root


def resize(src, out, *args):
    return run_cli("data_pipelines.prepare", "resize", str(src), "--out", str(out), *args, "--workers", "2",
                   cwd=src.parent, timeout=300)


def test_resize_writes_the_papers_256_copy_resumably_and_never_touches_the_source(originals, tmp_path):
    before = snapshot(originals)
    out = tmp_path / "imagenet-256"
    first = resize(originals, out, "--square")
    assert first.returncode == 1, first.stderr[-2000:]  # one unusable file, reported and left out
    assert f"unusable: {originals}/val/n01/truncated.JPEG: not a readable image" in first.stdout
    assert "15 train, 12 val images at shorter side 256 (square), JPEG quality 90; 27 written now" in first.stdout
    assert snapshot(originals) == before
    manifest = read_manifest(out)
    assert {k: manifest[k] for k in ("kind", "size", "square", "quality", "complete")} == \
        {"kind": "resized", "size": 256, "square": True, "quality": 90, "complete": True}
    assert manifest["source"] == str(originals.resolve()) and manifest["images"] == {"train": 15, "val": 12}
    for path in out.rglob("*.JPEG"):
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (256, 256) and img.mode in ("RGB", "L"), path
    assert Image.open(out / "train" / "n01" / "grey.JPEG").mode == "L"
    listed = usable_list(out, "val").read_text().split()
    assert len(listed) == 12 and "val/n01/truncated.JPEG" not in listed
    assert len(list_dataset(out).files["train"]) == 15

    # interrupted: an image missing and a temporary file left behind; the second run writes the one missing
    (out / "train" / "n02" / "n02_3.JPEG").unlink()
    (out / "train" / "n02" / ".n02_4.JPEG.tmp").write_bytes(b"half")
    second = resize(originals, out, "--square")
    assert "1 written now" in second.stdout and (out / "train" / "n02" / "n02_3.JPEG").is_file()
    other = resize(originals, out, "--size", "224", "--square")  # a copy made with other settings is refused
    assert other.returncode == 2 and "was made by another command or with other settings" in other.stderr
    assert snapshot(originals) == before


def test_shorter_side_without_square(originals, tmp_path):
    out = tmp_path / "short-256"
    resize(originals, out)
    sizes = {p.name: Image.open(p).size for p in (out / "train" / "n01").glob("n01_*.JPEG")}
    assert sizes == {"n01_0.JPEG": (341, 256), "n01_1.JPEG": (256, 341), "n01_2.JPEG": (384, 256),
                     "n01_3.JPEG": (341, 256), "n01_4.JPEG": (256, 320), "n01_5.JPEG": (299, 256)}


def _module(root, preset="alexnet", protocol="center", **kwargs):
    module = ImageFolderDataModule(root=str(root), num_classes=2, batch_size=4, preset=preset, eval_protocol=protocol,
                                   num_workers=1, **kwargs)
    module.setup()
    return module


def _nearest_crop(image: np.ndarray, source: np.ndarray) -> float:
    """The largest pixel difference between ``image`` and the 224x224 crop of ``source`` (or its mirror) nearest
    it, each taken relative to its top-left pixel: the colour noise adds a constant per channel. Every crop
    position is compared; one whose first row already differs by more than the best so far is not compared
    further (that row's difference is a lower bound of the whole crop's)."""
    image = image - image[:, :1, :1]
    best = np.inf
    for y in range(source.shape[1] - 223):
        for x in range(source.shape[2] - 223):
            crop = source[:, y:y + 224, x:x + 224]
            for crop in (crop, crop[:, :, ::-1]):
                if np.abs(image[:, 0] - (crop[:, 0] - crop[:, :1, 0])).max() < best:
                    best = min(best, np.abs(image - (crop - crop[:, :1, :1])).max())
    return best


@pytest.mark.parametrize("square", [True, False], ids=["square", "shorter-side"])
def test_on_a_prepared_copy_the_alexnet_path_only_crops_and_flips(originals, tmp_path, square):
    """The paper's inputs exactly: every training image is a 224 crop (maybe mirrored) of the stored image's
    centre 256x256, minus the mean and the per-image colour noise; evaluation views are its centre and corners."""
    out = tmp_path / "imagenet-256"
    resize(originals, out, *(["--square"] if square else []))
    module = _module(out)
    assert module.graph["prepared_side"] == 256
    for train, protocol in ((True, "center"), (False, "center"), (False, "tencrop")):  # no resampler in the graph
        graph = {**module.graph, "train": train, "protocol": protocol}
        pipe = _image_pipeline(file_list="x.txt", file_root="", mmap=True, **graph, decoder="cpu", hw_decoder_load=0.65,
                               batch_size=1, num_threads=1, device_id=None)
        assert b"Resize" not in pipe.serialize(), (train, protocol)
        originals_graph = {**graph, "prepared_side": None}
        assert b"Resize" in _image_pipeline(file_list="x.txt", file_root="", mmap=True, **originals_graph,
                                            decoder="cpu", hw_decoder_load=0.65, batch_size=1, num_threads=1,
                                            device_id=None).serialize()
    files = [f"{out}/{r}" for r in module.listing.files["train"]]
    decoded = {f: np.asarray(Image.open(f).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) for f in files}
    order = module.train_dataloader().shard(0)
    images = torch.cat([x for x, _ in module.train_dataloader()]).numpy()
    for image, index in zip(images[:6], order[:6]):
        source = decoded[files[index]]
        top, left = (source.shape[1] - 256) // 2, (source.shape[2] - 256) // 2
        source = source[:, max(top - 1, 0):top + 257, max(left - 1, 0):left + 257]  # the centre square, +-1 px
        assert _nearest_crop(image, source) < 1e-3  # the same pixels: no resampling anywhere
    if not square:
        return
    val_files = [f"{out}/{r}" for r in module.listing.files["val"]]
    first = val_files[module.val_dataloader().shard(0)[0]]  # validation's fixed order (dali_loader.evaluation_order)
    centre = next(iter(module.val_dataloader()))[0][0].numpy() + np.array(MEAN_PIXEL_2012)[:, None, None]
    source = np.asarray(Image.open(first).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
    assert np.abs(centre - source[:, 16:240, 16:240]).max() < 1e-3
    ten = next(iter(_module(out, protocol="tencrop").val_dataloader()))[0][0].numpy()
    assert ten.shape == (10, 3, 224, 224)
    assert np.abs(ten[1] + np.array(MEAN_PIXEL_2012)[:, None, None] - source[:, :224, 32:]).max() < 1e-3


def test_a_preset_that_needs_more_pixels_than_were_kept_is_refused(originals, tmp_path):
    out = tmp_path / "imagenet-256"
    resize(originals, out, "--square")
    with pytest.raises(DataConfigError, match=r"was prepared at shorter side 256 .* the resnet preset needs 480 px "
                                              r"\(data.scale_range\); prepare a copy with --size 480"):
        _module(out, preset="resnet", scale_range=(256, 480))
    with pytest.raises(DataConfigError, match=r"keeps only the centre square of each image .* "
                                              r"data.eval_protocol=dense scores the whole image"):
        _module(out, protocol="dense")
    whole = tmp_path / "imagenet-256-whole"
    resize(originals, whole)  # (exit 1: the originals hold one unusable file, left out)
    with pytest.raises(DataConfigError, match=r"was prepared at shorter side 256 .* the evaluation protocol needs "
                                              r"384 px"):
        _module(whole, protocol="dense", eval_scales=[384])
    assert _module(originals, preset="resnet").graph["prepared_side"] is None  # the originals: as before
