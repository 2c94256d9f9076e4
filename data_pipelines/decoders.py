"""The GPU decoder (``mixed``: nvJPEG, and the A100/H100 hardware decoder) against the CPU decoder.

A checkpoint must score the same whichever decoder feeds it. With ``jpeg_fancy_upsampling`` (set in
``dali_loader.GPU_DECODER_SETTINGS``) nvJPEG upsamples chroma as libjpeg-turbo does; what is left are
the two IDCTs' rounding differences, about one grey level. Needs a GPU: ``make gpu-check`` runs it.
"""

import torch

from .dali_loader import DALILoader

# Stated tolerance on the evaluation views (0-255 scale, after the resize to 256 and the crop): the
# mean absolute difference is rounding (<= 1 level), single pixels may differ more at sharp edges
MEAN_ABS_TOLERANCE = 1.0
MAX_ABS_TOLERANCE = 16.0


def decoder_agreement(files: list[str], batch_size: int = 32, device_id: int = 0) -> dict:
    """The ``center`` evaluation views of ``files`` decoded on the CPU and on the GPU, compared.

    Returns:
        ``images``, ``shape`` (of one view; equal for both decoders, else ValueError), ``mean_abs`` and
        ``max_abs`` (pixel differences on the 0-255 scale), and whether they are within the tolerances.
    """
    views = {}
    for decoder in ("cpu", "mixed"):
        loader = DALILoader(files, [0] * len(files), batch_size=batch_size, train=False, preset="alexnet",
                            protocol="center", image_size=224, resize_size=256, channels=3, decoder=decoder,
                            device_id=device_id if decoder == "mixed" else None, num_threads=4)
        views[decoder] = torch.cat([images.cpu() for images, _ in loader])
    cpu, gpu = views["cpu"], views["mixed"]
    if cpu.shape != gpu.shape:
        raise ValueError(f"the decoders give different shapes: cpu {tuple(cpu.shape)}, mixed {tuple(gpu.shape)}")
    diff = (cpu - gpu).abs()
    result = {"images": len(files), "shape": list(cpu.shape[1:]), "mean_abs": round(diff.mean().item(), 4),
              "max_abs": round(diff.max().item(), 3)}
    result["within_tolerance"] = result["mean_abs"] <= MEAN_ABS_TOLERANCE and result["max_abs"] <= MAX_ABS_TOLERANCE
    return result
