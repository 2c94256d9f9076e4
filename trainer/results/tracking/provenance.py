"""What a run records about where it ran: the code's git state, the packages and the hardware (runs compare like
with like)."""

import os
import subprocess
from pathlib import Path

from ... import PROJECT as PROJECT_DIR


def git_state(path: Path = PROJECT_DIR) -> dict[str, str | bool]:
    """The commit the code ran at, whether tracked files had uncommitted changes (``git_dirty``), and the
    untracked files beside them (``git_untracked``: a stray file does not make the code differ)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        status = git("status", "--porcelain").splitlines()
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": any(not line.startswith("??") for line in status),
                "git_untracked": [line[3:] for line in status if line.startswith("??")]}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown (not a git checkout)", "git_dirty": False, "git_untracked": []}


def environment() -> dict:
    """Package versions and hardware, for the run's config (runs compare like with like)."""
    import importlib.metadata
    import platform

    import torch

    packages = {}
    for name in ("torch", "torchvision", "pytorch-lightning", "nvidia-dali-cuda130", "hydra-core", "wandb",
                 "torchmetrics", "numpy"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    cpu = platform.processor() or platform.machine()
    try:  # the model name, where Linux tells it
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"packages": packages, "hardware": {"gpu": gpus[0] if gpus else None, "gpu_count": len(gpus),
                                               "cpu": cpu, "cpu_count": os.cpu_count(),
                                               "python": platform.python_version()}}
