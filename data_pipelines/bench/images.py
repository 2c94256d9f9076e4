"""The benchmark's images: generated ImageNet-sized JPEGs, a user's own (only read), and a prepared copy."""

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..layout import IMAGE_SUFFIXES, DataConfigError, cache_dir, usable_list
from ..manifest import build_once


def natural_image(rng: np.random.Generator, width: int = 500, height: int = 375) -> np.ndarray:
    """An RGB picture with a natural image's 1/f amplitude spectrum and correlated colour channels
    (JPEG's work, and so decode time, depends on exactly that): about 100 KB at quality 90."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height)) ** 1.1
    channels = [np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(height, width))
                for _ in range(3)]
    grey = channels[0]
    mix = np.stack([grey + 0.35 * c for c in channels], -1)  # colours vary together, as in photographs
    mix = (mix - mix.mean()) / mix.std()
    return np.clip(118 + 52 * mix + rng.uniform(-20, 20, 3), 0, 255).astype(np.uint8)


def _write_jpeg(job: tuple[int, str]) -> None:
    from PIL import Image

    index, path = job
    rng = np.random.default_rng([0, index])  # each image its own stream: the same set whatever the workers
    Image.fromarray(natural_image(rng, width=int(rng.integers(400, 600)))).save(path, quality=90)


def make_images(count: int, cache: Path | None = None, classes: int = 8, val_per_class: int = 4) -> Path:
    """``count`` ImageNet-sized JPEGs as ``train/<class>/<i>.JPEG`` (ImageNet's layout, with a small
    ``val`` split so that the trainer can read it too) in a folder of this project's cache, written once,
    whole (``manifest.build_once``), on all cores. Returns the folder."""
    def write(folder: Path) -> dict:
        jobs = [(i, folder / "train" / f"c{i % classes}" / f"{i:06d}.JPEG") for i in range(count)]
        jobs += [(count + i, folder / "val" / f"c{i % classes}" / f"{i:06d}.JPEG")
                 for i in range(classes * val_per_class)]
        for _, path in jobs:
            path.parent.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor() as pool:
            list(pool.map(_write_jpeg, [(i, str(p)) for i, p in jobs], chunksize=16))
        return {"images": count, "val_images": classes * val_per_class, "classes": classes, "quality": 90}

    return build_once((cache or cache_dir()) / "bench-jpegs" / f"{count}-train-{classes * val_per_class}-val",
                      "bench-jpegs", write)


class NoImagesError(DataConfigError):
    """``--data`` names no images the benchmark can read."""


def image_files(data: Path) -> tuple[list[str], list[int]]:
    """The images of ``--data``, read-only, and their labels (the index of their class folder).

    ``data`` is a data root (its ``train`` split is read, through ``verify``'s usable list when there
    is one), a folder of class folders, a folder of images, or a text file listing image paths (one a
    line, relative to the file's folder or absolute; the parent folder is the class).
    """
    data = data.expanduser()
    if data.is_file():
        lines = [line.strip() for line in data.read_text(errors="replace").splitlines() if line.strip()]
        files = [str(p if p.is_absolute() else data.parent / p) for p in map(Path, lines)]
    elif (data / "train").is_dir():  # a data root: its train split, through verify's list when there is one
        listed = usable_list(data, "train")
        relative = listed.read_text().split("\n") if listed.is_file() else [
            str(p.relative_to(data)) for p in sorted((data / "train").rglob("*")) if p.is_file()]
        files = [str(data / r) for r in relative if r]
    elif data.is_dir():
        files = sorted(str(p) for p in data.rglob("*") if p.name.lower().endswith(IMAGE_SUFFIXES) and p.is_file())
    else:
        raise NoImagesError(f"--data {data} does not exist; pass a data root (ROOT/train/<class>/*.JPEG), a folder "
                            f"of images, or a file listing image paths")
    files = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise NoImagesError(f"--data {data} holds no {'/'.join(IMAGE_SUFFIXES)} images; pass a data root "
                            f"(ROOT/train/<class>/*.JPEG), a folder of images, or a file listing image paths")
    classes = sorted({Path(f).parent.name for f in files})
    index = {c: i for i, c in enumerate(classes)}
    return files, [index[Path(f).parent.name] for f in files]



PREPARED_SIDE = 256


def prepared_copy(files: list[str], cache: Path | None = None) -> Path:
    """The images at 256x256 (``prepare resize --square``'s 2012 preprocessing, its defaults), made once in
    this project's cache, under their path relative to the images' common folder (so a class folder stays
    one); the images themselves are only read."""
    from ..prepare.resize import DEFAULT_QUALITY

    common = Path(os.path.commonpath(files)) if len(files) > 1 else Path(files[0]).parent
    key = hashlib.sha1("\n".join(files).encode()).hexdigest()[:10]

    def write(folder: Path) -> dict:
        jobs = [(f, str(folder / os.path.relpath(f, common)), PREPARED_SIDE, True, DEFAULT_QUALITY) for f in files]
        with ProcessPoolExecutor() as pool:
            problems = [p for p in pool.map(_resize, jobs, chunksize=16) if p]
        if problems:
            raise NoImagesError(f"{len(problems)} of the images cannot be read, e.g. {problems[0]}; run "
                                f"python -m data_pipelines.verify on them first")
        return {"images": len(files), "size": PREPARED_SIDE, "square": True, "quality": DEFAULT_QUALITY,
                "source": str(common)}

    return build_once((cache or cache_dir()) / "bench-prepared" / f"{common.name}-{key}-{PREPARED_SIDE}sq",
                      "bench-prepared", write)


def _resize(job: tuple) -> str | None:
    from ..prepare.resize import resize_image

    problem = resize_image(*job)
    return f"{job[0]}: {problem}" if problem else None
