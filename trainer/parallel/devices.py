"""No silent CPU fallback: a machine with NVIDIA GPUs that torch cannot use stops the run, saying why.

torch's CUDA builds need a driver at least as new as their CUDA version (torch 2.14.1: CUDA 13,
driver R580 or newer, or CUDA forward compatibility). With an older driver ``torch.cuda.is_available()``
is simply False, and Lightning's ``accelerator="auto"`` then trains on the CPU (ResNet-152 as 16 CPU
processes) with one info line. Here the machine's own evidence of GPUs (device files, ``nvidia-smi``,
``CUDA_VISIBLE_DEVICES``) is set against what torch sees, before anything is built.
"""

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

# the oldest driver branch for each CUDA major version (NVIDIA's CUDA toolkit release notes, table 3)
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


class GPUUnusableError(RuntimeError):
    """The machine has NVIDIA GPUs, or the run asks for one, but torch cannot use any."""


def _device_files() -> list[str]:
    devices = sorted(glob.glob("/dev/nvidia[0-9]*"))
    return [f"{len(devices)} device file(s) {', '.join(devices[:4])}"] if devices else []


def _visible_devices(environ=os.environ) -> list[str]:
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return [f"CUDA_VISIBLE_DEVICES={visible}"] if visible and visible not in ("-1", "NoDevFiles") and \
        not visible.startswith("-") else []


def nvidia_evidence(environ=os.environ) -> list[str]:
    """What says this machine has NVIDIA GPUs: device files, ``nvidia-smi -L``, ``CUDA_VISIBLE_DEVICES``."""
    found = _device_files()
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        gpus = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
        if listed.returncode == 0 and gpus:
            found.append(f"nvidia-smi lists {len(gpus)} GPU(s) ({gpus[0].split(' (UUID')[0]})")
    except (OSError, subprocess.SubprocessError):
        pass
    return found + _visible_devices(environ)


def driver_version() -> str | None:
    """The NVIDIA driver's version, from ``nvidia-smi`` or the kernel module; None when neither tells."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)",
                          Path("/proc/driver/nvidia/version").read_text())
        return match.group(1) if match else None
    except OSError:
        return None


def check_gpus_usable(accelerator: str, environ=os.environ) -> None:
    """Raises when the run would train on the CPU although it asked for a GPU or the machine has some.

    ``trainer.accelerator=cpu`` is the way to train on the CPU on purpose: nothing is checked then.

    Raises:
        GPUUnusableError: naming the evidence, the driver against what the installed torch needs, and the fix.
    """
    if accelerator not in GPU_ACCELERATORS:
        return
    # the evidence that costs nothing to read (nvidia-smi only looked for)
    if accelerator == "auto" and not (_device_files() or _visible_devices(environ) or shutil.which("nvidia-smi")):
        return  # no sign of an NVIDIA GPU: the CPU is what auto means here, said without importing torch (1 s)
    import torch

    if torch.cuda.is_available():
        return
    evidence = nvidia_evidence(environ)
    if not evidence:
        if accelerator != "auto":
            raise GPUUnusableError(f"trainer.accelerator={accelerator} asks for a GPU, but this machine has none "
                                   f"(no /dev/nvidia*, no nvidia-smi, CUDA_VISIBLE_DEVICES unset); run on a GPU node, "
                                   f"or train on the CPU with trainer.accelerator=cpu")
        return
    cuda = torch.version.cuda
    if cuda is None:
        cause = f"the installed torch {torch.__version__} is a CPU-only build"
        fix = "install the CUDA build of torch (make install does, from constraints.txt)"
    else:
        needed = MIN_DRIVER.get(int(cuda.split(".")[0]))
        driver = driver_version()
        too_old = driver is not None and needed is not None and int(driver.split(".")[0]) < needed
        cause = (f"the installed torch {torch.__version__} is built for CUDA {cuda}, which needs NVIDIA driver "
                 f"R{needed} or newer" + (f", and this machine's driver is {driver}" if driver else
                                          ", and this machine's driver version could not be read"))
        fix = (f"update the driver to R{needed}+, or install CUDA {cuda}'s forward-compatibility package "
               f"(cuda-compat) and put its libraries on LD_LIBRARY_PATH" if too_old or driver is None else
               "check that the GPUs are not hidden from this process (CUDA_VISIBLE_DEVICES, the container's "
               "--gpus) and that `nvidia-smi` works")
    raise GPUUnusableError(f"this machine has NVIDIA GPUs ({'; '.join(evidence)}) but torch cannot use them: "
                           f"{cause}. Training would silently run on the CPU. Fix: {fix}; or train on the CPU "
                           f"on purpose with trainer.accelerator=cpu")
