"""The loaders the benchmark times, each as an iterable of batches: DALI's, torchvision's, and the ceilings."""

import math
import resource
import time
from pathlib import Path

from .images import PREPARED_SIDE, image_files

# on the original files, then on the copy prepared at 256x256 (prepare resize --square)
VARIANTS = ("decode_only", "decode_resize", "dali", "torchvision", "prepared_decode_only", "prepared_dali",
            "prepared_torchvision")


def _torchvision_loader(files: list[str], labels: list[int], batch_size: int, threads: int, pass_images: int):
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    from ..augment import MEAN_PIXEL_2012, PCA_EIGVEC, PCA_SIGMA, PCA_STDEV

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
                 variant: str, prepared_side: int | None = None):
    """The training pipeline, or one of its two ceilings: an iterable over the raw output batches of a
    pipeline that only decodes (whole images of varied sizes) or only decodes and resizes the window."""
    from nvidia.dali import fn, pipeline_def, types

    from ..augment import random_window
    from ..dali_loader import DALILoader

    files = [files[i % len(files)] for i in range(pass_images)]
    labels = [labels[i % len(labels)] for i in range(pass_images)]
    if variant == "dali":
        return DALILoader(files, labels, batch_size=batch_size, train=True, preset="alexnet", protocol="center",
                          image_size=224, resize_size=256, channels=3, num_threads=threads,
                          prepared_side=prepared_side, prepared_square=prepared_side is not None)

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
    """Images/s of each pass (after one warm-up pass), the time to each pass's first batch, and the peak memory.

    ``variant``: one of ``VARIANTS``; the ``prepared_*`` ones read ``data`` as a copy prepared at shorter
    side 256 (square), on which our loader only crops and flips.
    """
    import torch

    torch.set_num_threads(threads)
    files, labels = image_files(data)
    base = variant.removeprefix("prepared_")
    if base == "torchvision":
        loader = _torchvision_loader(files, labels, batch_size, threads, pass_images)
    else:
        prepared = PREPARED_SIDE if variant.startswith("prepared_") else None
        loader = _dali_loader(files, labels, batch_size, threads, pass_images, base, prepared)

    def one_pass() -> tuple[float, float]:
        start, images, first = time.perf_counter(), 0, None
        for batch in loader:
            images += len(batch[0])
            first = first or time.perf_counter() - start
        return images / (time.perf_counter() - start), first

    one_pass()  # warm-up: workers started, files in the page cache, pipelines built
    rates, starts = zip(*(one_pass() for _ in range(runs)))
    peak_kb = sum(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"variant": variant, "img_s": rates, "epoch_start_s": starts, "peak_mb": peak_kb / 1024}
