"""Weights in: torchvision's format and this project's checkpoints loaded strictly, published weights, and the
data pipeline checked against torchvision's reference transforms with the same weights."""

import os

import pytest
import torch
import torchvision
from PIL import Image

from data_pipelines import ImageFolderDataModule
from data_pipelines.bench import make_images
from models import create_model
from models.weights import WeightsError, load_weights
from trainer.run.module import ClassifierModule


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """ImageNet-sized JPEGs of natural-image statistics in 8 class folders (32 val images)."""
    return make_images(32, cache=tmp_path_factory.mktemp("jpegs"))


def test_torchvision_weights_through_our_pipeline_agree_with_torchvisions_transforms(tmp_path, images):
    """A torchvision ResNet-18 (random weights), saved as torchvision saves it, scored through this project's
    DALI `center` evaluation, against the same network on torchvision's reference transforms of its weights
    (resize 256, centre 224, bilinear, ImageNet mean/std) on the same JPEGs.

    Measured: logits within 2.2 % of their largest value, softmax within 0.006, the same top-1 on 32 of 32
    images; the inputs differ by 0.09 on average (normalised units: 5 grey levels), the two resamplers' and
    the centre square's half-pixel placement. Tolerances: 5 %, 0.02 and 30 of 32.
    """
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=8).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")  # torchvision's format
    data = ImageFolderDataModule(root=str(images), num_classes=8, batch_size=8, preset="resnet", eval_protocol="center",
                                 num_workers=1)
    data.setup()
    ours = ClassifierModule("resnet18", num_classes=8, weights=str(tmp_path / "resnet18.pth")).eval()
    transforms = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    listed = [os.path.join(images, r) for r in data.listing.files["val"]]
    files = [listed[i] for i in data.val_dataloader().shard(0) if i >= 0]  # validation's fixed order
    with torch.no_grad():
        logits = torch.cat([ours(x) for x, _ in data.val_dataloader()])
        expected = reference(torch.stack([transforms(Image.open(f).convert("RGB")) for f in files]))
    relative = ((logits - expected).abs().max() / expected.abs().max()).item()
    probabilities = (logits.softmax(1) - expected.softmax(1)).abs().max().item()
    same_top1 = int((logits.argmax(1) == expected.argmax(1)).sum())
    print(f"logits {relative:.3%}, softmax {probabilities:.4f}, same top-1 {same_top1}/32")
    assert len(files) == 32 and relative <= 0.05 and probabilities <= 0.02 and same_top1 >= 30


def test_weights_that_do_not_fit_are_refused_by_name(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "ten.pth")
    with pytest.raises(WeightsError, match=r"does not fit model=resnet18 \(other shapes: fc.bias \(10,\) "
                                           r"\(the network's: "
                                           r"\(1000,\)\), fc.weight \(10, 512\)"):
        load_weights(create_model("resnet18"), "resnet18", tmp_path / "ten.pth")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightsError, match=r"unexpected: layer1.2.bn1.bias"):
        load_weights(create_model("resnet18"), "resnet18", tmp_path / "r34.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be loaded as tensors and plain data"):
        load_weights(create_model("resnet18"), "resnet18", tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="torchvision publishes no ImageNet weights for model=alexnet"):
        load_weights(create_model("alexnet"), "alexnet", "torchvision")


def test_a_checkpoint_of_this_project_starts_a_network(tmp_path, digits_cache):
    from helpers import make_cfg
    from trainer.run.checkpoints import load_checkpoint
    from trainer.train import train

    result = train(make_cfg(tmp_path, digits_cache, "logger=none", "trainer.max_epochs=1",
                            "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"))
    net = create_model("lenet5", num_classes=10, in_channels=1)
    load_weights(net, "lenet5", result["last_ckpt"])
    saved = load_checkpoint(result["last_ckpt"])["state_dict"]
    assert all(torch.equal(v, saved[f"net.{k}"]) for k, v in net.state_dict().items())
    with pytest.raises(WeightsError, match="is a checkpoint of model=lenet5, not model=resnet18"):
        load_weights(create_model("resnet18"), "resnet18", result["last_ckpt"])


def test_published_weights_offline_and_not_cached_say_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: offline
    with pytest.raises(WeightsError) as err:
        load_weights(create_model("resnet50"), "resnet50", "torchvision")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert f"{cached} is not cached and cannot be downloaded" in str(err.value)
    assert "fetch https://download.pytorch.org/models/resnet50-0676ba61.pth" in str(err.value)
    assert not cached.exists()


def test_evaluate_published_weights_prints_torchvisions_figures_beside_the_run(tmp_path, images):
    """`trainer.evaluate model=resnet18 model.weights=torchvision` on a 1000-class folder, offline, with the
    weights' file in torch hub's cache (here: random weights in its place, as no network is at hand)."""
    from helpers import run_cli

    torch_home = tmp_path / "torch"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    jpeg = next((images / "val" / "c0").iterdir())
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in range(1000):
            (root / split / f"n{c:04d}").mkdir(parents=True)
            os.link(jpeg, root / split / f"n{c:04d}" / "x.JPEG")
    result = run_cli("trainer.evaluate", "model=resnet18", "model.weights=torchvision", "data=imagenet",
                     f"data.root={root}", "data.batch_size=8", "trainer.limit_val_batches=2", "logger=none",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"TORCH_HOME": str(torch_home)},
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "note: torchvision's weights expect mean/std normalisation" in out
    assert "resnet18 from model.weights=torchvision, center: val top-1 error" in out
    assert ("torchvision's published figures for these weights (ResNet18_Weights.IMAGENET1K_V1, ImageNet-1K val, "
            "shorter side 256, centre 224): top-1 error 30.24 %, top-5 10.92 %") in out
    assert "He et al. 2015" in out  # and the paper's
