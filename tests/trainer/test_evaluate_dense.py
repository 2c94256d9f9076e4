"""``python -m trainer.evaluate protocol=dense|multiscale`` on AlexNet, VGG-16 and ResNet checkpoints (CPU: the
digits at 224 px, one image), and the test scales each protocol takes."""

import pytest
from omegaconf import OmegaConf

from helpers import make_cfg, run_cli
from trainer.train import train

ONE_STEP = ["trainer.max_steps=1", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "logger=none",
            "data.batch_size=2"]
EVAL = ["trainer.limit_val_batches=1", "data.batch_size=1", "trainer.enable_progress_bar=false", "logger=none"]


@pytest.fixture(scope="module")
def checkpoints(module_dir, digits_cache):
    root = module_dir
    return root, {name: train(make_cfg(root / name, digits_cache, f"model={name}", *ONE_STEP))["last_ckpt"]
                  for name in ("alexnet", "vgg16", "resnet18")}


@pytest.mark.parametrize("model, args, says", [
    ("alexnet", ["protocol=dense"], "dense at shorter side 224"),  # the digits' whole field
    ("vgg16", ["protocol=multiscale"], "multiscale at shorter side 256, 384, 512"),  # Table 4's, from papers.yaml
    ("resnet18", ["protocol=multiscale", "scales=[224,256]"], "multiscale at shorter side 224, 256")])
def test_a_checkpoint_is_scored_under_the_dense_protocols(checkpoints, digits_cache, model, args, says):
    root, ckpts = checkpoints
    result = run_cli("trainer.evaluate", f"ckpt_path={ckpts[model]}", *args, *EVAL, cwd=root,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{model} from {ckpts[model]}, {says}: val top-1 error" in result.stdout
    assert "(on 1 of 360 images: partial)" in result.stdout and "Traceback" not in result.stderr


def test_the_test_scales_come_from_the_command_line_then_the_papers_row():
    from trainer.evaluate import test_scales
    from trainer.results.paper_comparison import references_for

    def cfg(model, protocol, scales=None, preset="resnet"):
        return OmegaConf.create({"protocol": protocol, "scales": scales, "model": {"model_name": model},
                                 "data": {"name": "imagenet", "preset": preset}})

    vgg = references_for("vgg16", ["vgg16_2014_val_jittered_dense", "vgg16_2014_val_jittered_multiscale",
                                   "vgg16_2014_val_single_scale"])
    assert test_scales(cfg("vgg16", "dense"), vgg) == [384]  # Table 3, trained with S in [256, 512]
    assert test_scales(cfg("vgg16", "multiscale"), vgg) == [256, 384, 512]  # Table 4
    assert test_scales(cfg("vgg16", "dense", [256]), vgg) == [256]
    assert test_scales(cfg("resnet152", "multiscale"), references_for("resnet152")) == [224, 256, 384, 480, 640]
    assert test_scales(cfg("alexnet", "dense"), references_for("alexnet")) is None  # the data's resize_size
    assert test_scales(cfg("alexnet", "center"), references_for("alexnet")) is None


def test_multiscale_without_scales_for_a_model_whose_rows_give_none_says_what_to_pass(checkpoints, digits_cache):
    root, ckpts = checkpoints
    result = run_cli("trainer.evaluate", f"ckpt_path={ckpts['resnet18']}", "protocol=multiscale", *EVAL, cwd=root,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("error: protocol=multiscale averages over several test scales and the papers' rows of resnet18 give none: "
            "pass them, e.g. scales=[224,256,384,480,640]") in result.stderr
