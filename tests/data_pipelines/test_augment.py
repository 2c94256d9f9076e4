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


def test_trivial_augment_and_erasing_change_images_keep_shapes_and_labels_and_follow_the_seed(jpegs):
    labels = [3, 1, 4, 1, 5, 9, 2, 6]
    plain = batches(jpegs, labels, preset="inception")
    both = batches(jpegs, labels, preset="inception", auto_augment="trivial_augment", random_erase=1.0)
    again = batches(jpegs, labels, preset="inception", auto_augment="trivial_augment", random_erase=1.0)
    for (x, y), (x_plain, y_plain), (x_again, y_again) in zip(both, plain, again):
        assert x.shape == x_plain.shape == (4, 3, 224, 224) and torch.equal(y, y_plain)
        assert torch.equal(x, x_again) and torch.equal(y, y_again)  # the same seed, the same images
    images = torch.cat([x for x, _ in both])
    assert not torch.equal(images, torch.cat([x for x, _ in plain]))
    erased = (images == 0).all(dim=1).flatten(1).float().mean(1)  # each image's share of all-zero pixels
    assert ((erased >= 0.015) & (erased <= 0.34)).all(), erased  # one box of 2-33 % of the image, every time
    other_seed = torch.cat([x for x, _ in batches(jpegs, labels, preset="inception", seed=1,
                                                  auto_augment="trivial_augment", random_erase=1.0)])
    assert not torch.equal(images, other_seed)
    never = torch.cat([x for x, _ in batches(jpegs, labels, preset="inception", random_erase=0.0)])
    assert (never == 0).all(dim=1).flatten(1).float().mean(1).max() < 0.01
    (val, _), _ = batches(jpegs, labels, train=False, auto_augment="trivial_augment", random_erase=1.0)
    (val_plain, _), _ = batches(jpegs, labels, train=False)
    assert torch.equal(val, val_plain)  # validation is never augmented


def test_trivial_augment_resumes_mid_epoch_exactly(jpegs):
    settings = dict(preset="inception", auto_augment="trivial_augment", random_erase=0.5, batch_size=2)
    whole = batches(jpegs, **settings)
    files, labels = jpegs, list(range(len(jpegs)))
    base = dict(batch_size=2, train=True, protocol="center", image_size=224, resize_size=256, channels=3,
                num_threads=1, preset="inception", auto_augment="trivial_augment", random_erase=0.5)
    stopped = DALILoader(files, labels, **base)
    for i, _ in enumerate(stopped):
        if i == 1:
            break
    resumed = DALILoader(files, labels, **base)
    resumed.load_state_dict(stopped.state_dict())
    for (x, y), (x_ref, y_ref) in zip(list(resumed), whole[2:]):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_trivial_augment_on_grey_images_is_refused_before_dali_runs(tmp_path, digits_cache):
    from data_pipelines import DigitsDataModule
    from data_pipelines.layout import DataConfigError
    from helpers import make_cfg
    from trainer.config_check import ConfigValueError, check_values

    with pytest.raises(ConfigValueError, match=r"data.auto_augment=trivial_augment works on RGB images, and this "
                                               r"model reads grey ones \(model.in_channels=1\)"):
        check_values(make_cfg(tmp_path, digits_cache, "data.auto_augment=trivial_augment"))  # LeNet-5's digits
    with pytest.raises(DataConfigError, match="works on RGB images, not grey ones"):
        DigitsDataModule(str(digits_cache / "digits"), 10, channels=1, auto_augment="trivial_augment")
    check_values(make_cfg(tmp_path, digits_cache, "model=resnet18", "data.auto_augment=trivial_augment"))
