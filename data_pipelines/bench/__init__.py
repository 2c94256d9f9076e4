"""``python -m data_pipelines.bench``: images/s of the training pipeline, DALI against torchvision.

Measured on the same JPEGs with the same augmentation (the ``alexnet`` preset: shorter side 256,
centre 256x256, random 224 crop, flip, PCA colour noise, normalisation) and the same number of CPU
threads / loader workers:

- ``dali``: this project's DALI pipeline (``DALILoader``), as training reads it;
- ``torchvision``: ``ImageFolder`` + ``DataLoader(num_workers=threads)`` with the same transforms;
- ``decode_only``: DALI reading and decoding the files with nothing else, the ceiling of any pipeline;
- ``decode_resize``: DALI decoding the preset's window and resizing it to 224 with nothing else, the
  ceiling of any pipeline that resamples with DALI's CPU resize;
- ``prepared_dali``, ``prepared_torchvision``, ``prepared_decode_only``: the same on a copy of the
  images prepared once at 256x256 (``prepare resize --square``, the 2012 preprocessing; made in the
  cache), on which our loader only crops and flips.

The images: ``--data`` (a data root, a folder of images or a list of image files: only read,
never written), else ``--images`` ImageNet-sized JPEGs generated once into this project's cache.

Each pass reads ``--pass-images`` samples (the image set repeated as often as needed), so that the
figure is the steady state of a long ImageNet epoch and not the cost of starting one; that cost is
reported on its own (``*_epoch_start_s``: from asking for an epoch to its first batch).

Each variant runs in a process of its own (so its peak memory is its own, loader workers included),
makes one warm-up pass, then ``--runs`` timed ones; the median is reported. The last line printed is
one JSON object with ``<variant>_img_s`` for each, ``ratio`` (DALI / torchvision), ``dali_of_decode``,
``prepared_ratio`` (our loader on the prepared copy / torchvision on the originals),
``prepared_of_decode`` (our loader on the prepared copy / decoding it alone), the epoch start times
and the peak memory of each, in MB.
"""

from .images import NoImagesError, image_files, make_images, natural_image

__all__ = ["NoImagesError", "image_files", "make_images", "natural_image"]
