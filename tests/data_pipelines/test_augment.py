"""The augmentation presets and evaluation crops, run through real DALI pipelines on the CPU."""

import numpy as np
import pytest
import torch
from PIL import Image

from data_pipelines.augment import IMAGENET_MEAN, IMAGENET_STD, MEAN_PIXEL_2012, PCA_EIGVEC, PCA_SIGMA, PCA_STDEV
from data_pipelines.bench import natural_image
from data_pipelines.dali_loader import DALILoader


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    files = []
    for i in range(8):
        files.append(str(folder / f"{i}.JPEG"))
        Image.fromarray(natural_image(rng, width=500 - 40 * (i % 3))).save(files[-1], quality=90)
    return files


def batches(files, labels=None, **kwargs):
    settings = dict(batch_size=4, train=True, preset="alexnet", protocol="center", image_size=224, resize_size=256,
                    channels=3, num_threads=1)
    loader = DALILoader(files, labels if labels is not None else list(range(len(files))), **{**settings, **kwargs})
    return list(loader)


@pytest.mark.parametrize("preset", ["alexnet", "resnet", "inception"])
def test_presets_give_normalised_224_crops(jpegs, preset):
    (x, y), (x2, _) = batches(jpegs, preset=preset)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.long
    if preset == "alexnet":  # the mean pixel subtracted, not divided: 0-255 less ~105-127, plus colour noise
        assert -175 < x.min() < -60 and 60 < x.max() < 195
    else:  # mean/std normalised
        assert -3.5 < x.min() < -1.0 and 1.0 < x.max() < 3.5
    assert not torch.equal(x[0], x2[0])


def test_eval_center_and_tencrop_shapes(jpegs):
    (center, _), _ = batches(jpegs, train=False, protocol="center")
    (ten, _), _ = batches(jpegs, train=False, protocol="tencrop")
    assert center.shape == (4, 3, 224, 224) and ten.shape == (4, 10, 3, 224, 224)
    # the centre of the 256 square is the centre crop of a shorter side of 256
    torch.testing.assert_close(ten[:, 4], center)


def test_tencrop_takes_the_four_corners_the_centre_and_their_mirrors(tmp_path):
    # a 256x256 image whose red channel is the column and green the row: each crop shows where it was taken
    rows, cols = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([cols, rows, np.zeros_like(rows)], -1).astype(np.uint8)).save(tmp_path / "grid.png")
    (ten, _), = batches([str(tmp_path / "grid.png")], batch_size=1, train=False, protocol="tencrop", preset="resnet")
    pixels = ten[0] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    corners = [(round(v[0, 0, 0].item()), round(v[1, 0, 0].item())) for v in pixels]  # (column, row) top-left
    assert corners[:5] == [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]
    assert corners[5:] == [(223, 0), (255, 0), (223, 32), (255, 32), (239, 16)]  # mirrored: the right edge first


def test_pca_colour_noise_has_krizhevskys_statistics(tmp_path):
    # a flat grey image: the crop and the flip change nothing, so what remains is the colour offset
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    files = [str(tmp_path / "grey.png")] * 512
    offsets = torch.cat([x[:, :, 100, 100] for x, _ in batches(files, batch_size=128)])
    offsets += torch.tensor(MEAN_PIXEL_2012) - 128.0  # undo the mean subtraction: the pure noise
    expected_cov = PCA_EIGVEC @ np.diag((PCA_SIGMA * PCA_STDEV) ** 2) @ PCA_EIGVEC.T
    seen_cov = np.cov(offsets.double().numpy().T)
    print("channel std expected", np.sqrt(np.diag(expected_cov)).round(2), "seen", np.sqrt(np.diag(seen_cov)).round(2))
    assert np.abs(offsets.mean(0).numpy()).max() < 1.5  # zero-mean (std of the mean ~ 12.3 / sqrt(512) = 0.54)
    np.testing.assert_allclose(np.sqrt(np.diag(seen_cov)), np.sqrt(np.diag(expected_cov)), rtol=0.12)
    # along the principal direction the noise is strongest: 0.1 x 121.78
    principal = offsets.double().numpy() @ PCA_EIGVEC[:, 2]
    assert principal.std() == pytest.approx(PCA_SIGMA * PCA_STDEV[2], rel=0.12)


def test_grey_images_for_lenet(tmp_path):
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(tmp_path / "d.png")
    (x, _), = batches([str(tmp_path / "d.png")], batch_size=1, preset="digits", image_size=32, resize_size=28,
                      channels=1)
    assert x.shape == (1, 1, 32, 32)
    assert len(torch.unique(x)) == 2  # the digit and the black field around it (shifted by up to 2 px)
