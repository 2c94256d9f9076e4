"""``python -m data_pipelines.bench``: images/s of the training pipeline, DALI against torchvision.

Measured on the same JPEGs with the same augmentation (the ``alexnet`` preset: shorter side 256,
centre 256x256, random 224 crop, flip, PCA colour noise, normalisation) and the same number of CPU
threads / loader workers:

- ``dali``: this project's DALI pipeline (``DALILoader``), as training reads it;
- ``torchvision``: ``ImageFolder`` + ``DataLoader(num_workers=threads)`` with the same transforms;
- ``decode_only``: DALI reading and decoding the files with nothing else, the ceiling of any pipeline;
- ``decode_resize``: DALI decoding the preset's window and resizing it to 224 with nothing else, the
  ceiling of any pipeline that resamples with DALI's CPU resize.

The images: ``--data`` (a data root, a folder of images or a list of image files: only read,
never written), else ``--images`` ImageNet-sized JPEGs generated once into this project's cache.

Each pass reads ``--pass-images`` samples (the image set repeated as often as needed), so that the
figure is the steady state of a long ImageNet epoch and not the cost of starting one; that cost is
reported on its own (``*_epoch_start_s``: from asking for an epoch to its first batch).

Each variant runs in a process of its own (so its peak memory is its own, loader workers included),
makes one warm-up pass, then ``--runs`` timed ones; the median is reported. The last line printed is
one JSON object with ``dali_img_s``, ``torchvision_img_s``, ``decode_only_img_s``,
``decode_resize_img_s``, ``ratio`` (DALI / torchvision), ``dali_of_decode``, the epoch start times
and the peak memory of each, in MB.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .layout import IMAGE_SUFFIXES, DataConfigError, cache_dir, list_samples
from .manifest import build_once

VARIANTS = ("decode_only", "decode_resize", "dali", "torchvision")


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
    elif (data / "train").is_dir():
        classes = sorted(d.name for d in (data / "train").iterdir() if d.is_dir())
        files = list_samples(data, "train", classes)[0] if classes else []
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


def _torchvision_loader(files: list[str], labels: list[int], batch_size: int, threads: int, pass_images: int):
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from .augment import MEAN_PIXEL_2012, PCA_EIGVEC, PCA_SIGMA, PCA_STDEV

    eigvec, stdev = torch.from_numpy(PCA_EIGVEC), torch.from_numpy(PCA_STDEV)

    def pca_noise(x: torch.Tensor) -> torch.Tensor:  # x: CHW on the 0-255 scale
        return x + (eigvec @ (torch.randn(3) * PCA_SIGMA * stdev)).view(3, 1, 1)

    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(256), transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(), transforms.PILToTensor(),
        transforms.Lambda(lambda x: pca_noise(x.float())),
        transforms.Normalize(MEAN_PIXEL_2012, (1.0, 1.0, 1.0))])
    # ImageFolder's reading and decoding (PIL) over the same files, without listing a folder
    samples = list(zip(files, labels))
    dataset = _Samples(samples, transform)
    dataset = Subset(dataset, [i % len(dataset) for i in range(pass_images)])
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=threads, persistent_workers=True,
                      drop_last=False)


class _Samples:
    """``ImageFolder`` over a given list of (path, label): the same loader and transform."""

    def __init__(self, samples, transform):
        from torchvision.datasets.folder import default_loader

        self.samples, self.transform, self.loader = samples, transform, default_loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return self.transform(self.loader(path)), label


def _dali_loader(files: list[str], labels: list[int], batch_size: int, threads: int, pass_images: int,
                 variant: str):
    """The training pipeline, or one of its two ceilings: an iterable over the raw output batches of a
    pipeline that only decodes (whole images of varied sizes) or only decodes and resizes the window."""
    from nvidia.dali import fn, pipeline_def, types

    from .augment import random_window
    from .dali_loader import DALILoader

    files, labels = [files[i % len(files)] for i in range(pass_images)], [labels[i % len(files)] for i in range(pass_images)]
    if variant == "dali":
        return DALILoader(files, labels, batch_size=batch_size, train=True, preset="alexnet", protocol="center",
                          image_size=224, resize_size=256, channels=3, num_threads=threads)

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=None, exec_dynamic=True)  # as DALILoader
    def ceiling():
        encoded, label = fn.readers.file(files=files, labels=labels, name="reader", random_shuffle=True)
        decode = dict(device="cpu", output_type=types.RGB)
        if variant == "decode_only":
            return fn.decoders.image(encoded, **decode), label
        return random_window(encoded, decode, "alexnet", image_size=224, resize_size=256), label

    pipe = ceiling()
    pipe.build()
    iterations = math.ceil(pass_images / batch_size)

    class Passes:  # one pass = one epoch of the reader
        def __iter__(self):
            return (pipe.run() for _ in range(iterations))

    return Passes()


def measure(variant: str, data: Path, batch_size: int, threads: int, runs: int, pass_images: int) -> dict:
    """Images/s of each pass (after one warm-up pass), the time to each pass's first batch, and the peak memory."""
    import torch

    torch.set_num_threads(threads)
    files, labels = image_files(data)
    if variant == "torchvision":
        loader = _torchvision_loader(files, labels, batch_size, threads, pass_images)
    else:
        loader = _dali_loader(files, labels, batch_size, threads, pass_images, variant)

    def one_pass() -> tuple[float, float]:
        start, images, first = time.perf_counter(), 0, None
        for batch in loader:
            images += len(batch[0])
            first = first or time.perf_counter() - start
        return images / (time.perf_counter() - start), first

    one_pass()  # warm-up: workers started, files in the page cache, pipelines built
    rates, starts = zip(*(one_pass() for _ in range(runs)))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"variant": variant, "img_s": rates, "epoch_start_s": starts, "peak_mb": peak_kb / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="your own images, only read: a data root (ROOT/train/<class>/*.JPEG), a folder of images "
                             "or a file listing image paths (default: --images generated JPEGs in the cache)")
    parser.add_argument("--images", type=int, default=1024,
                        help="without --data: how many ImageNet-sized JPEGs to generate (once, in this project's cache)")
    parser.add_argument("--pass-images", type=int, default=8192,
                        help="samples read per timed pass, the image set repeated (default 8192)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI threads = DataLoader workers")
    parser.add_argument("--runs", type=int, default=5, help="timed passes (median reported)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one measurement, in a subprocess
    args = parser.parse_args(argv)
    if args.variant:  # one measurement, in a process of its own
        print(json.dumps(measure(args.variant, args.data, args.batch_size, args.threads, args.runs, args.pass_images)))
        return 0
    if args.data is None:
        print(f"ImageNet-sized JPEGs: {args.images} generated once into {cache_dir() / 'bench-jpegs'} ...", flush=True)
        args.data = make_images(args.images)
    try:
        files, _ = image_files(args.data)
    except DataConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = ["--data", str(args.data), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                "--runs", str(args.runs), "--pass-images", str(args.pass_images)]
    size_kb = sum(os.path.getsize(f) for f in files) / len(files) / 1024
    print(f"{len(files)} JPEGs in {args.data} (mean {size_kb:.0f} KB), read {args.pass_images} times a pass; "
          f"batch {args.batch_size}, {args.threads} threads/workers, {args.runs} passes after a warm-up, median",
          flush=True)
    results = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, "-m", "data_pipelines.bench", "--variant", variant, *settings],
                             capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        rates = results[variant]["img_s"]
        print(f"{variant:>13}: {statistics.median(rates):7.1f} img/s (passes: {', '.join(f'{r:.0f}' for r in rates)}), "
              f"epoch start {statistics.median(results[variant]['epoch_start_s']):.2f} s, "
              f"peak memory {results[variant]['peak_mb']:.0f} MB", flush=True)
    median = {v: statistics.median(r["img_s"]) for v, r in results.items()}
    print(json.dumps({**{f"{v}_img_s": round(median[v], 1) for v in VARIANTS},
                      "ratio": round(median["dali"] / median["torchvision"], 2),
                      "dali_of_decode": round(median["dali"] / median["decode_only"], 2),
                      "dali_of_decode_resize": round(median["dali"] / median["decode_resize"], 2),
                      **{f"{v}_epoch_start_s": round(statistics.median(r["epoch_start_s"]), 3)
                         for v, r in results.items() if v in ("dali", "torchvision")},
                      "peak_mb": {v: round(r["peak_mb"]) for v, r in results.items()},
                      "images": len(files), "pass_images": args.pass_images, "mean_kb": round(size_kb),
                      "batch_size": args.batch_size, "threads": args.threads, "runs": args.runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
