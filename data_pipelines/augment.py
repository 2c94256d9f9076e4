"""The papers' augmentations and evaluation crops as DALI graph pieces (CPU or GPU, same code).

Each function takes decoded images (HWC, uint8, RGB or grey) and returns normalised CHW float
images. Values and sources: ``shared/reference/papers.md``.
"""

import numpy as np
from nvidia.dali import fn, types

# Krizhevsky et al. 2012, section 4.1: PCA over ImageNet's RGB pixels, 0-255 scale.
PCA_STDEV = np.array([19.7208, 37.0939, 121.7801], dtype=np.float32)  # sqrt of the eigenvalues
PCA_EIGVEC = np.array([[0.4180, -0.7126, -0.5635],                   # eigenvectors as columns
                       [-0.8170, -0.0235, -0.5762],
                       [0.3973, 0.7012, -0.5920]], dtype=np.float32)
PCA_SIGMA = 0.1  # a_i ~ N(0, 0.1), drawn per image each time it is used

MEAN_PIXEL_2012 = (127.30, 119.72, 104.91)  # AlexNet subtracted the mean and did not divide
IMAGENET_MEAN = (123.675, 116.28, 103.53)   # the torchvision convention (0.485, 0.456, 0.406) x 255
IMAGENET_STD = (58.395, 57.12, 57.375)      # (0.229, 0.224, 0.225) x 255

PRESETS = ("alexnet", "resnet", "inception", "digits")
EVAL_PROTOCOLS = ("center", "tencrop")
# tencrop: the four corners and the centre (crop_pos x, y), each also mirrored (AlexNet section 4.1)
TEN_CROP_POSITIONS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))


def normalization(preset: str, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0-255 scale a preset's images are normalised with."""
    mean, std = (MEAN_PIXEL_2012, (1.0, 1.0, 1.0)) if preset == "alexnet" else (IMAGENET_MEAN, IMAGENET_STD)
    if channels == 1:
        return [sum(mean) / 3], [sum(std) / 3]
    return list(mean), list(std)


def pca_color_noise(images, channels: int, sigma: float = PCA_SIGMA):
    """Adds Krizhevsky's colour noise: sum_i a_i sqrt(lambda_i) p_i with a_i ~ N(0, sigma), one draw per image.

    Grey images (``channels=1``) have no colour to perturb and are returned as they are.
    """
    if channels != 3:
        return images
    alpha = fn.random.normal(shape=[1, 3], stddev=sigma)
    offset = fn.coord_transform(alpha * PCA_STDEV, M=PCA_EIGVEC.flatten().tolist())  # P (a * sqrt(lambda))
    # coord_transform treats the innermost (channel) axis as a vector: pixel + offset, as float
    return fn.coord_transform(images, T=fn.reshape(offset, shape=[3]), dtype=types.FLOAT)


def _random_crop(images, size: int):
    return fn.crop(images, crop=[size, size], crop_pos_x=fn.random.uniform(range=[0.0, 1.0]),
                   crop_pos_y=fn.random.uniform(range=[0.0, 1.0]), out_of_bounds_policy="pad")


def train_augment(images, preset: str, image_size: int, resize_size: int, channels: int,
                  scale_range: tuple[int, int] = (256, 480)):
    """The training augmentation of ``preset``.

    Args:
        images: decoded HWC images (CPU or GPU).
        preset: ``alexnet`` (shorter side 256, centre 256x256, random crop, flip, PCA noise, mean
            subtraction), ``resnet`` (shorter side random in ``scale_range``, random crop, flip, PCA
            noise), ``inception`` (random-resized crop from ``decode_random_crop``, flip) or ``digits``
            (shorter side to ``resize_size``, placed at a random position of the ``image_size`` field,
            no flip: a mirrored digit is another glyph).
        image_size: side of the square crop fed to the model.
        resize_size: the shorter side before cropping (alexnet, digits).
        channels: 3 (RGB) or 1 (grey).
        scale_range: the shorter side's random range (resnet).
    """
    mirror = fn.random.coin_flip()
    if preset == "alexnet":
        images = fn.crop(fn.resize(images, resize_shorter=resize_size), crop=[resize_size, resize_size])
        images = pca_color_noise(_random_crop(images, image_size), channels)
    elif preset == "resnet":
        shorter = fn.random.uniform(range=[float(scale_range[0]), float(scale_range[1])])
        images = pca_color_noise(_random_crop(fn.resize(images, resize_shorter=shorter), image_size), channels)
    elif preset == "inception":
        images = fn.resize(images, size=[image_size, image_size])  # the crop itself was taken while decoding
    elif preset == "digits":
        images, mirror = _random_crop(fn.resize(images, resize_shorter=resize_size), image_size), 0
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; valid: {', '.join(PRESETS)}")
    mean, std = normalization(preset, channels)
    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std,
                                    mirror=mirror)


def eval_crops(images, protocol: str, preset: str, image_size: int, resize_size: int, channels: int):
    """Evaluation views: ``center`` gives one CHW image (shorter side ``resize_size``, centre crop), ``tencrop``
    a stack of 10 (NCHW: the 4 corners and the centre of the centre ``resize_size`` square, and their mirrors)."""
    mean, std = normalization(preset, channels)
    images = fn.resize(images, resize_shorter=resize_size)

    def view(x, y, mirror):
        # cropped before normalising, so a field larger than the image (digits) is padded with black, as in training
        crop = fn.crop(images, crop=[image_size, image_size], crop_pos_x=x, crop_pos_y=y, out_of_bounds_policy="pad")
        return fn.crop_mirror_normalize(crop, mirror=mirror, dtype=types.FLOAT, output_layout="CHW", mean=mean,
                                        std=std)

    if protocol == "center":
        return view(0.5, 0.5, 0)
    if protocol == "tencrop":
        images = fn.crop(images, crop=[resize_size, resize_size])
        return fn.stack(*[view(x, y, m) for m in (0, 1) for x, y in TEN_CROP_POSITIONS])
    raise ValueError(f"unknown evaluation protocol {protocol!r}; valid: {', '.join(EVAL_PROTOCOLS)}")
