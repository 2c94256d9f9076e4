"""No silent CPU fallback: a machine whose NVIDIA GPUs torch cannot use stops the run before training."""

import os
import stat

import pytest
import torch

from helpers import run_cli
from trainer.parallel.devices import GPUUnusableError, check_gpus_usable


@pytest.fixture
def old_driver(tmp_path, monkeypatch):
    """A machine with an H100 behind a driver too old for torch's CUDA 13: a stand-in for nvidia-smi on
    PATH, and no GPU for torch (hidden with CUDA_VISIBLE_DEVICES, so that this holds on a GPU machine too)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$*\" in\n"
                   "  -L) echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)';;\n"
                   "  *driver_version*) echo '535.104.05';;\n  *) exit 1;;\nesac\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return bin_dir


@pytest.mark.skipif(torch.version.cuda is None, reason="a CPU-only torch build has no driver requirement")
def test_an_old_driver_stops_the_run_naming_the_driver_and_the_fix(old_driver):
    with pytest.raises(GPUUnusableError) as err:
        check_gpus_usable("auto")
    message = str(err.value)
    assert "nvidia-smi lists 1 GPU(s) (GPU 0: NVIDIA H100 80GB HBM3)" in message
    assert f"built for CUDA {torch.version.cuda}, which needs NVIDIA driver R580 or newer" in message
    assert "this machine's driver is 535.104.05" in message and "update the driver to R580+" in message
    assert "trainer.accelerator=cpu" in message
    check_gpus_usable("cpu")  # the CPU on purpose: nothing to check


@pytest.mark.parametrize("args", [[], ["model=alexnet", "strategy=two_gpu_split"]])
def test_the_cli_refuses_before_training_instead_of_falling_back_to_the_cpu(old_driver, tmp_path, args):
    result = run_cli("trainer", *args, "logger=none", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: this machine has NVIDIA GPUs" in result.stderr and "535.104.05" in result.stderr
    assert "running the towers as" not in result.stderr + result.stdout and "Epoch" not in result.stdout


def test_the_cpu_on_purpose_still_trains(old_driver, tmp_path, digits_cache):
    result = run_cli("trainer", "trainer.accelerator=cpu", "logger=none", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", cwd=tmp_path,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_gpus_named_only_by_cuda_visible_devices(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GPUUnusableError, match="CUDA_VISIBLE_DEVICES=0,1"):
        check_gpus_usable("auto")


def test_asking_for_a_gpu_on_a_machine_without_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if not any(name.startswith("nvidia") and name[6:].isdigit() for name in os.listdir("/dev")):
        with pytest.raises(GPUUnusableError, match="trainer.accelerator=gpu asks for a GPU, but this machine has none"):
            check_gpus_usable("gpu")
        check_gpus_usable("auto")  # no GPU anywhere: the CPU is the machine's, nothing to say
