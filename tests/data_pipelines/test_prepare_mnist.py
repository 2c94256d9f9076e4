"""``python -m data_pipelines.prepare mnist``: LeCun's IDX files into the folder layout, checked; ``data=mnist``."""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_pipelines import snapshot

from data_pipelines import list_dataset
from data_pipelines.manifest import read_manifest
from data_pipelines.prepare.mnist import FILES, IMAGES_MAGIC, LABELS_MAGIC
from helpers import PROJECT, make_cfg, run_cli

# LeCun's four files: MNIST_DIR, else where the workplace keeps them (beside the checkout)
REAL_MNIST = Path(os.environ.get("MNIST_DIR") or PROJECT.parent / "shared" / "data" / "mnist").expanduser()
MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
       "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}


def write_idx(folder: Path, counts: dict[str, int], gzipped: bool = True, magic_images: int = IMAGES_MAGIC) -> Path:
    """IDX files in LeCun's format with ``counts`` images per split (a made-up data set of the right shape)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images_name, labels_name, _) in FILES.items():
        n = counts[split]
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 6:22, 10:18] = rng.integers(100, 256, (n, 16, 8))  # a blob where a digit would be
        labels = (np.arange(n) % 10).astype(np.uint8)
        for name, header, payload in ((images_name, [magic_images, n, 28, 28], images),
                                      (labels_name, [LABELS_MAGIC, n], labels)):
            data = np.array(header, dtype=">i4").tobytes() + payload.tobytes()
            (folder / (name + (".gz" if gzipped else ""))).write_bytes(gzip.compress(data) if gzipped else data)
    return folder


def prepare(source: Path, out: Path, *extra: str, env: dict | None = None):
    return run_cli("data_pipelines.prepare", "mnist", *(["--source", str(source)] if source else []), "--out",
                   str(out), *extra, cwd=out.parent, env=env, timeout=600)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"the real MNIST files are not at {REAL_MNIST}: set MNIST_DIR "
                                                    f"to a folder of LeCun's four .gz files")
def test_the_real_mnist_files_become_the_folder_layout(tmp_path):
    for name, md5 in MD5.items():  # the files are LeCun's originals
        assert hashlib.md5((REAL_MNIST / name).read_bytes()).hexdigest() == md5
    before = snapshot(REAL_MNIST)
    out = tmp_path / "mnist"
    result = prepare(REAL_MNIST, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "60,000 train images and 10,000 val (MNIST test) images written; train LeNet-5" in result.stdout
    assert snapshot(REAL_MNIST) == before
    listing = list_dataset(out)
    assert listing.classes == [str(d) for d in range(10)]
    assert np.bincount(listing.labels["val"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(listing.labels["train"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                                              5949]
    first = Image.open(out / "train" / "5" / "00000.png")  # MNIST's first training image is a 5
    assert first.size == (28, 28) and first.mode == "L"
    assert read_manifest(out)["complete"] and read_manifest(out)["val"] == 10_000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A made-up data set in LeCun's format (uncompressed IDX files), prepared once: (source, out)."""
    folder = tmp_path_factory.mktemp("mnist")
    plain = write_idx(folder / "plain", {"train": 60_000, "val": 10_000}, gzipped=False)
    result = prepare(plain, folder / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    return plain, folder / "out"


def test_idx_files_gzipped_or_not_resumable_and_checked(tmp_path, prepared):
    plain, out = prepared
    assert len(list_dataset(out).files["train"]) == 60_000
    again = prepare(plain, out)  # resumed: nothing to write
    assert again.returncode == 0 and "complete already (an earlier run wrote it): nothing written now" in again.stdout

    wrong = write_idx(tmp_path / "wrong", {"train": 60_000, "val": 10_000}, gzipped=False, magic_images=1234)
    refused = prepare(wrong, tmp_path / "never")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{wrong}/train-images-idx3-ubyte is not an MNIST image file (magic number 1234, expected 2051)" \
        in refused.stderr
    assert not (tmp_path / "never").exists()  # checked before anything is written
    short = write_idx(tmp_path / "short", {"train": 500, "val": 10_000})  # gzipped
    assert "holds 500 entries, expected 60,000" in prepare(short, tmp_path / "never").stderr
    missing = prepare(tmp_path / "empty", tmp_path / "never")
    assert "has no train-images-idx3-ubyte.gz" in missing.stderr and "or pass --download" in missing.stderr


def test_download_offline_says_which_files_to_fetch(tmp_path):
    unreachable = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
                   "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = prepare(None, tmp_path / "mnist", "--download", env=unreachable)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--download could not fetch MNIST" in result.stderr and "this machine may be offline" in result.stderr
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz" in result.stderr


def test_data_mnist_is_the_papers_input_and_says_how_to_prepare(tmp_path, digits_cache, prepared):
    from hydra.utils import instantiate

    from data_pipelines import DataLayoutError

    cfg = make_cfg(tmp_path, digits_cache, "data=mnist", f"data.root={tmp_path / 'absent'}")
    with pytest.raises(DataLayoutError, match=r"absent does not exist; make it with: python -m data_pipelines.prepare "
                                              r"mnist --source DIR --out"):
        instantiate(cfg.data).setup()
    module = instantiate(make_cfg(tmp_path, digits_cache, "data=mnist", f"data.root={prepared[1]}").data)
    module.setup()
    images, _ = next(iter(module.train_dataloader()))
    assert images.shape == (32, 1, 32, 32)  # 28x28 in the 32x32 field, grey
    background = images.min()
    assert background == pytest.approx(-0.1) and images.max() <= 1.175 + 1e-6  # the paper's input scale
    assert (images[:, :, :2, :] == background).all() and (images[:, :, -2:, :] == background).all()  # centred:
    assert (images[:, :, :, :2] == background).all() and (images[:, :, :, -2:] == background).all()  # 2 px each side
    blob = images[:, :, 2 + 6:2 + 22, 2 + 10:2 + 18]
    assert (blob > background).float().mean() > 0.99  # the digit's pixels exactly where they were stored, unshifted
