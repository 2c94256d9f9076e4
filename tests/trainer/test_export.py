"""``python -m trainer.export``: a checkpoint out as torchvision's state dict (pickled or safetensors) or ONNX, round
trips checked."""

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision

from helpers import make_cfg, run_cli
from models import create_model
from trainer.train import train


@pytest.fixture(scope="module")
def checkpoints(module_dir, digits_cache):
    """A few steps of ResNet-18 (RGB, 64 px) and of LeNet-5 on the digits: their last checkpoints."""
    folder = module_dir
    common = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"]
    return {name: train(make_cfg(folder / name, digits_cache, f"model={name}", *common, *extra))["last_ckpt"]
            for name, extra in (("resnet18", ["model.input_size=64"]), ("lenet5", []))}


def export(ckpt, fmt: str, out, cwd):
    return run_cli("trainer.export", str(ckpt), "--format", fmt, "--out", str(out), cwd=cwd, timeout=300)


def test_a_resnet_exports_as_torchvisions_own_state_dict(checkpoints, tmp_path):
    result = export(checkpoints["resnet18"], "torchvision", tmp_path / "resnet18.pth", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"torchvision.models.resnet18(num_classes=10).load_state_dict(torch.load('{tmp_path / 'resnet18.pth'}'" \
        in result.stdout
    theirs = torchvision.models.resnet18(num_classes=10)
    theirs.load_state_dict(torch.load(tmp_path / "resnet18.pth", weights_only=True))  # strict
    ours = create_model("resnet18", num_classes=10)
    ours.load_state_dict({k[4:]: v for k, v in torch.load(checkpoints["resnet18"], weights_only=True)
                          ["state_dict"].items() if k.startswith("net.")})
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(theirs.eval()(x), ours.eval()(x))
    again = export(checkpoints["resnet18"], "torchvision", tmp_path / "resnet18.pth", tmp_path)
    assert again.returncode == 2 and "exists; it is left as it is" in again.stderr  # never overwritten


def test_a_resnet_exports_as_safetensors_that_torchvisions_model_loads(checkpoints, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "resnet18.safetensors"
    result = export(checkpoints["resnet18"], "safetensors", out, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (f"torchvision.models.resnet18(num_classes=10).load_state_dict(safetensors.torch.load_file('{out}'))"
            in result.stdout)
    theirs = torchvision.models.resnet18(num_classes=10)
    theirs.load_state_dict(load_file(out))  # strict: torchvision's names, every tensor
    saved = torch.load(checkpoints["resnet18"], weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[f"net.{k}"]) for k, v in load_file(out).items())
    with safe_open(out, "pt") as f:
        assert f.metadata() == {"model_name": "resnet18", "num_classes": "10", "in_channels": "3",
                                "input_size": "64"}
    assert out.read_bytes()[8:9] == b"{" and b"PK" not in out.read_bytes()[:4]  # safetensors' header, not a zip
    again = export(checkpoints["lenet5"], "safetensors", out, tmp_path)
    assert again.returncode == 2 and "exists; it is left as it is" in again.stderr  # never overwritten
    lenet = export(checkpoints["lenet5"], "safetensors", tmp_path / "lenet5.safetensors", tmp_path)
    assert "models.create_model('lenet5', num_classes=10, in_channels=1).load_state_dict(" in lenet.stdout
    create_model("lenet5", num_classes=10, in_channels=1).load_state_dict(load_file(tmp_path / "lenet5.safetensors"))


@pytest.mark.parametrize("name, size", [("resnet18", 64), ("lenet5", 32)])
def test_onnx_export_matches_pytorch_under_onnxruntime(checkpoints, tmp_path, name, size):
    out = tmp_path / f"{name}.onnx"
    result = export(checkpoints[name], "onnx", out, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "onnxruntime matches PyTorch to" in result.stdout
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    channels = 3 if name == "resnet18" else 1
    images = torch.randn(5, channels, size, size)  # another batch size than the export's: the batch is dynamic
    net = create_model(name, num_classes=10, in_channels=channels)
    net.load_state_dict({k[4:]: v for k, v in torch.load(checkpoints[name], weights_only=True)["state_dict"].items()
                         if k.startswith("net.")})
    with torch.no_grad():
        expected = net.eval()(images).numpy()
    got = session.run(["logits"], {"images": images.numpy()})[0]
    assert got.shape == (5, 10) and np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()  # stated tolerance


def test_our_own_networks_export_as_their_builders_state_dict(checkpoints, tmp_path):
    result = export(checkpoints["lenet5"], "torchvision", tmp_path / "lenet5.pth", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "models.create_model('lenet5', num_classes=10, in_channels=1).load_state_dict(" in result.stdout
    create_model("lenet5", num_classes=10, in_channels=1).load_state_dict(torch.load(tmp_path / "lenet5.pth"))


def test_not_a_checkpoint_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    result = export(tmp_path / "other.pt", "onnx", tmp_path / "x.onnx", tmp_path)
    assert result.returncode == 2 and "is not a checkpoint written by this trainer" in result.stderr
    assert not (tmp_path / "x.onnx").exists()
