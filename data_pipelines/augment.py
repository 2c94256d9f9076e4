"""The papers' augmentations and evaluation crops as DALI graphs, from the encoded file to a normalised tensor.

Each function takes the encoded images and the decoder settings (CPU or GPU, same code) and returns
CHW float images. Where a preset keeps only a window of the image (a crop that is then resized),
only that window is decoded and resized straight to the output size: the result is the paper's
"resize, then crop" up to resampling, at about twice the speed on a CPU (docs/data.md, "Benchmark").
The colour noise is folded into the per-image mean that the final normalisation subtracts, so it
costs no pass over the pixels. Values and sources: ``docs/papers.md``.
"""

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types

from .protocols import (  # noqa: F401 (augment's names, as before)
    AUTO_AUGMENTS,
    DENSE_PROTOCOLS,
    DIGIT_PRESETS,
    EVAL_PROTOCOLS,
    PRESETS,
)

# Krizhevsky et al. 2012, section 4.1: PCA over ImageNet's RGB pixels, 0-255 scale.
PCA_STDEV = np.array([19.7208, 37.0939, 121.7801], dtype=np.float32)  # sqrt of the eigenvalues
PCA_EIGVEC = np.array([[0.4180, -0.7126, -0.5635],                   # eigenvectors as columns
                       [-0.8170, -0.0235, -0.5762],
                       [0.3973, 0.7012, -0.5920]], dtype=np.float32)
PCA_SIGMA = 0.1  # a_i ~ N(0, 0.1), drawn per image each time it is used

MEAN_PIXEL_2012 = (127.30, 119.72, 104.91)  # AlexNet subtracted the mean and did not divide
IMAGENET_MEAN = (123.675, 116.28, 103.53)   # the torchvision convention (0.485, 0.456, 0.406) x 255
IMAGENET_STD = (58.395, 57.12, 57.375)      # (0.229, 0.224, 0.225) x 255
# LeNet-5's input scale (LeCun et al. 1998, section II.A): background -0.1, ink 1.175, "so that the mean input
# is roughly 0 and the variance roughly 1, which accelerates learning": (x - 20) / 200 on MNIST's 0 (paper)
# to 255 (ink). ImageNet's statistics would put the background at -2 and saturate the first tanh layers.
LENET_MEAN, LENET_STD = 20.0, 200.0

# LeNet-5's distortions (LeCun et al. 1998, section III.C: "planar affine transformations: horizontal and
# vertical translations, scaling, squeezing and horizontal shearing"); the paper gives no ranges, these
# are ours: shifts of up to 2 px, scale +-10 %, squeeze +-10 %, shear +-0.15
DISTORTION = dict(shift=2.0, scale=0.1, squeeze=0.1, shear=0.15)
# torchvision's RandomErasing: a box of 2-33 % of the image, aspect ratio log-uniform in [0.3, 3.3], set to 0 after
# normalisation (the mean colour)
ERASE_AREA, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)
# tencrop: the four corners and the centre (crop_pos x, y), each also mirrored (AlexNet section 4.1)
TEN_CROP_POSITIONS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))


def normalization(preset: str, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0-255 scale a preset's images are normalised with."""
    if preset in ("mnist", "mnist_distorted"):
        return [LENET_MEAN] * channels, [LENET_STD] * channels
    mean, std = (MEAN_PIXEL_2012, (1.0, 1.0, 1.0)) if preset == "alexnet" else (IMAGENET_MEAN, IMAGENET_STD)
    if channels == 1:
        return [sum(mean) / 3], [sum(std) / 3]
    return list(mean), list(std)


def mean_with_pca_noise(mean: list[float], sigma: float = PCA_SIGMA):
    """Per image: ``mean - sum_i a_i sqrt(lambda_i) p_i`` with a_i ~ N(0, sigma) (Krizhevsky's colour noise).

    Subtracting it adds the noise: (x + noise) - mean == x - (mean - noise).
    """
    alpha = fn.random.normal(shape=[1, 3], stddev=sigma)
    # coord_transform: M v + T, with M = -P and v = a * sqrt(lambda)
    noisy = fn.coord_transform(alpha * PCA_STDEV, M=(-PCA_EIGVEC).flatten().tolist(), T=mean)
    return fn.reshape(noisy, shape=[3])


def _window(encoded, decode: dict, side, pos_x, pos_y, out_size: int, resize: bool = True):
    """Decodes the square window ``side`` px wide at relative position (pos_x, pos_y), resized to ``out_size``
    (``resize=False``: the window is already ``out_size`` wide, on a prepared copy, and is only cut out)."""
    if not resize:
        side = out_size  # the same size for every image: a batch of equal shapes
    window = fn.decoders.image_crop(encoded, **decode, crop_w=side, crop_h=side, crop_pos_x=pos_x, crop_pos_y=pos_y)
    return fn.resize(window, size=[out_size, out_size]) if resize else window


def _shorter_side(encoded):
    shape = fn.peek_image_shape(encoded, dtype=types.FLOAT)  # from the file header: (H, W, C)
    height, width = shape[0], shape[1]
    return height, width, dmath.min(height, width)


def _digit_in_field(encoded, decode: dict, image_size: int, resize_size: int, pos_x, pos_y):
    """The whole image resized to ``resize_size`` and placed in an ``image_size`` field padded with black."""
    digit = fn.resize(fn.decoders.image(encoded, **decode), resize_shorter=resize_size)
    return fn.crop(digit, crop=[image_size, image_size], crop_pos_x=pos_x, crop_pos_y=pos_y,
                   out_of_bounds_policy="pad")


def distorted(images, image_size: int):
    """A random planar affine distortion of each ``image_size`` field about its centre (``DISTORTION``)."""
    centre = [image_size / 2, image_size / 2]
    scale = fn.random.uniform(range=[1 - DISTORTION["scale"], 1 + DISTORTION["scale"]])
    squeeze = fn.random.uniform(range=[-DISTORTION["squeeze"], DISTORTION["squeeze"]])
    shear = fn.random.uniform(range=[-DISTORTION["shear"], DISTORTION["shear"]])
    shift = fn.random.uniform(range=[-DISTORTION["shift"], DISTORTION["shift"]], shape=[2])
    matrix = fn.transforms.combine(
        fn.transforms.scale(scale=fn.stack(scale * (1 + squeeze), scale * (1 - squeeze)), center=centre),
        fn.transforms.shear(shear=fn.stack(shear, 0.0 * shear), center=centre),
        fn.transforms.translation(offset=shift))
    return fn.warp_affine(images, matrix=matrix, fill_value=0, inverse_map=False, interp_type=types.INTERP_LINEAR)


def random_window(encoded, decode: dict, preset: str, image_size: int, resize_size: int,
                  scale_range: tuple[int, int] = (256, 480)):
    """The random square crop of the ``alexnet`` or ``resnet`` preset, decoded and resized to ``image_size``
    (see ``train_images``)."""
    height, width, shorter = _shorter_side(encoded)
    u, v = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
    if preset == "alexnet":  # a crop of the centre square; in source pixels it is image/resize of the square
        side = shorter * (image_size / resize_size)
        pos_x = ((width - shorter) * 0.5 + u * (shorter - side)) / (width - side)
        pos_y = ((height - shorter) * 0.5 + v * (shorter - side)) / (height - side)
    else:  # anywhere in the image rescaled so that its shorter side is random in scale_range
        side = shorter * image_size / fn.random.uniform(range=[float(scale_range[0]), float(scale_range[1])])
        pos_x, pos_y = u, v
    return _window(encoded, decode, side, pos_x, pos_y, image_size)


def prepared_crop(encoded, decode: dict, image_size: int, resize_size: int, square: bool):
    """The ``alexnet`` crop on a copy prepared at shorter side ``resize_size``: the whole stored image is
    decoded, and the random ``image_size`` crop of its centre square is cut out by the final
    normalisation pass (no resampling: the paper's exact inputs).

    Returns:
        The decoded images, and the crop arguments of ``crop_mirror_normalize``.
    """
    u, v = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
    if square:  # every image is resize_size square: the relative position is the random draw itself
        pos_x, pos_y = u, v
    else:  # a crop of the centre square of an image whose shorter side is resize_size
        height, width, shorter = _shorter_side(encoded)
        pos_x = ((width - shorter) * 0.5 + u * (shorter - image_size)) / (width - image_size)
        pos_y = ((height - shorter) * 0.5 + v * (shorter - image_size)) / (height - image_size)
    return fn.decoders.image(encoded, **decode), dict(crop=[image_size, image_size], crop_pos_x=pos_x,
                                                       crop_pos_y=pos_y)


def trivial_augment(images):
    """TrivialAugment Wide on HWC uint8 images: one operation of its suite, at a random magnitude of 31 bins, per
    image (needs a pipeline with ``enable_conditionals``)."""
    from nvidia.dali.auto_aug import trivial_augment as ta

    return ta.trivial_augment_wide(images)


def random_erase(images, probability: float, size: int):
    """torchvision's ``RandomErasing`` on normalised CHW images ``size`` px square: with ``probability``, a box of
    ``ERASE_AREA`` of the image at an aspect ratio log-uniform in ``ERASE_RATIO`` is set to 0. (torchvision retries
    a box that does not fit up to 10 times; here its sides are cut to the image.)"""
    area = fn.random.uniform(range=list(ERASE_AREA)) * float(size * size)
    ratio = dmath.exp(fn.random.uniform(range=[float(np.log(ERASE_RATIO[0])), float(np.log(ERASE_RATIO[1]))]))
    height = dmath.min(dmath.sqrt(area * ratio), float(size))
    width = dmath.min(dmath.sqrt(area / ratio), float(size))
    on = fn.cast(fn.random.coin_flip(probability=probability), dtype=types.FLOAT)
    top = fn.random.uniform(range=[0.0, 1.0]) * (size - height)
    left = fn.random.uniform(range=[0.0, 1.0]) * (size - width)
    return fn.erase(images, anchor=fn.stack(top, left), shape=fn.stack(height * on, width * on), axis_names="HW",
                    fill_value=0.0)


def train_images(encoded, decode: dict, preset: str, image_size: int, resize_size: int, channels: int,
                 scale_range: tuple[int, int] = (256, 480), prepared_side: int | None = None,
                 prepared_square: bool = False, auto_augment: str | None = None, erase: float = 0.0):
    """The training augmentation of ``preset``.

    Args:
        encoded: the files' bytes (``readers.file``).
        decode: ``decoders.*`` settings (device, output type, GPU buffers).
        preset: ``alexnet`` (shorter side ``resize_size``, centre square, random ``image_size`` crop of it,
            flip, PCA noise, mean subtraction), ``resnet`` (shorter side random in ``scale_range``, random
            crop, flip, PCA noise), ``inception`` (random-resized crop, flip) or ``digits`` (shorter side to
            ``resize_size``, placed at a random position of the ``image_size`` field, no flip: a mirrored
            digit is another glyph), ``mnist`` (the digit centred in the field, no augmentation: the paper's
            0.95 %) or ``mnist_distorted`` (centred, then a random planar affine distortion: the paper's 0.8 %).
        image_size: side of the square crop fed to the model.
        resize_size: the shorter side before cropping (alexnet, digits).
        channels: 3 (RGB) or 1 (grey).
        scale_range: the shorter side's random range (resnet).
        prepared_side: the shorter side of every image when the data is a prepared copy
            (``prepare resize``); equal to ``resize_size``, the ``alexnet`` preset only crops and flips.
        prepared_square: the prepared copy kept the centre square (``prepare resize --square``).
        auto_augment: ``trivial_augment`` (``trivial_augment``, before the normalisation), or None.
        erase: the probability of ``random_erase`` (after the normalisation); 0: never.
    """
    mean, std = normalization(preset, channels)
    mirror, crop = fn.random.coin_flip(), {}
    if preset in ("alexnet", "resnet"):
        if preset == "alexnet" and prepared_side == resize_size:
            images, crop = prepared_crop(encoded, decode, image_size, resize_size, prepared_square)
        else:
            images = random_window(encoded, decode, preset, image_size, resize_size, scale_range)
        if channels == 3:
            mean = mean_with_pca_noise(mean)
    elif preset == "inception":  # decode only the random-resized crop (Szegedy et al. 2015)
        images = fn.decoders.image_random_crop(encoded, **decode, random_area=[0.08, 1.0],
                                               random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, size=[image_size, image_size])
    elif preset == "digits":  # a random position in the field
        u, v = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
        images, mirror = _digit_in_field(encoded, decode, image_size, resize_size, u, v), 0
    elif preset in ("mnist", "mnist_distorted"):  # centred, as LeNet-5 read MNIST; distorted or not
        images, mirror = _digit_in_field(encoded, decode, image_size, resize_size, 0.5, 0.5), 0
        if preset == "mnist_distorted":
            images = distorted(images, image_size)
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; valid: {', '.join(PRESETS)}")
    if auto_augment == "trivial_augment":
        images = trivial_augment(images)
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std,
                                      mirror=mirror, **crop)
    return random_erase(images, erase, image_size) if erase else images


def eval_images(encoded, decode: dict, protocol: str, preset: str, image_size: int, resize_size: int,
                channels: int, prepared_side: int | None = None, scales: tuple[int, ...] = ()):
    """Evaluation views: ``center`` gives one CHW image (shorter side ``resize_size``, centre crop), ``tencrop``
    a stack of 10 (NCHW: the 4 corners and the centre of the centre ``resize_size`` square, and their mirrors).
    On a copy prepared at shorter side ``resize_size`` they are crops only (``prepared_side``). The dense
    protocols give ``dense_views``'s list instead."""
    mean, std = normalization(preset, channels)
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; valid: {', '.join(EVAL_PROTOCOLS)}")
    if protocol in DENSE_PROTOCOLS:
        return dense_views(encoded, decode, preset, image_size, resize_size, channels, scales)
    if preset in DIGIT_PRESETS:  # the field is larger than the digit: centred in it
        square = _digit_in_field(encoded, decode, image_size, resize_size, 0.5, 0.5)
    else:  # the centre square, at resize_size
        _, _, shorter = _shorter_side(encoded)
        square = _window(encoded, decode, shorter, 0.5, 0.5, resize_size, resize=prepared_side != resize_size)

    def view(x, y, mirror):
        return fn.crop_mirror_normalize(square, crop=[image_size, image_size], crop_pos_x=x, crop_pos_y=y,
                                        mirror=mirror, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std)

    if protocol == "center":
        return view(0.5, 0.5, 0)
    return fn.stack(*[view(x, y, m) for m in (0, 1) for x, y in TEN_CROP_POSITIONS])


def dense_views(encoded, decode: dict, preset: str, image_size: int, resize_size: int, channels: int,
                scales: tuple[int, ...]) -> list:
    """The whole image rescaled so that its shorter side is each of ``scales`` (VGG's Q; ResNet's multi-scale
    sides), normalised, each padded with zeros to the largest of its batch: ``[view, shape, view, shape, ...]``,
    ``shape`` being the view's own (C, H, W) before padding. For the digit presets the whole image is the field
    the digit sits in (``image_size``)."""
    mean, std = normalization(preset, channels)
    if not scales:
        raise ValueError("the dense protocols need the test scales (shorter sides in px), e.g. (256,)")
    if preset in DIGIT_PRESETS:
        whole = _digit_in_field(encoded, decode, image_size, resize_size, 0.5, 0.5)
    else:
        whole = fn.decoders.image(encoded, **decode)
    views = []
    for side in scales:
        view = fn.crop_mirror_normalize(fn.resize(whole, resize_shorter=side), dtype=types.FLOAT,
                                        output_layout="CHW", mean=mean, std=std)
        views += [fn.pad(view, axes=(1, 2), fill_value=0), view.shape(dtype=types.INT32)]
    return views
