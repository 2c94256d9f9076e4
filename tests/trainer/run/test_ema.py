"""The weights' moving average (trainer/run/callbacks/ema.py): against a hand computation, in every checkpoint,
validated beside the trained weights, taken by evaluate and export when asked, refused where it cannot apply."""

import pytest
import torch

from helpers import callback_in_runs, make_cfg, run_cli
from trainer.config_check import ConfigValueError, check_values
from trainer.run.callbacks.ema import adjusted_decay
from trainer.run.checkpoints import CheckpointError, checkpoint_weights, load_checkpoint

TINY = ["logger=none", "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0", "ema.adjust=false"]


def test_the_average_is_the_decayed_sum_of_the_weights_after_each_update(tmp_path, digits_cache):
    import pytorch_lightning as pl

    import trainer.train as train_module

    after_step = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            after_step.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    with callback_in_runs(Record()):
        result = train_module.train(make_cfg(tmp_path, digits_cache, *TINY, "ema.decay=0.5", "ema.every_n_steps=2"))
    assert len(after_step) == 6 and result["val_ema/top1_err"] is not None
    expected = after_step[1]  # steps 2, 4, 6 update it; the first update copies
    for weights in (after_step[3], after_step[5]):
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] if expected[k].is_floating_point() else weights[k]
                    for k in expected}
    ckpt = load_checkpoint(result["last_ckpt"])
    assert set(ckpt["ema_state_dict"]) == set(ckpt["state_dict"])
    for key, value in ckpt["ema_state_dict"].items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-7)
    assert all(torch.equal(v, after_step[5][k]) for k, v in ckpt["state_dict"].items())  # the trained ones
    assert int(ckpt["ema_averaging_state"]["n_averaged"]) == 3
    assert "ema_state_dict" in load_checkpoint(result["best_ckpt"])


def test_torchvisions_adjustment_and_the_refusals(tmp_path, digits_cache):
    assert adjusted_decay(0.99998, 1024, 32, 600) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)  # 0.99891
    assert adjusted_decay(0.9, 4096, 32, 1) == 0.0  # at most 1 - 1: the average is the weights
    with pytest.raises(ConfigValueError, match=r"eval_weights=ema reports the weights' moving average, but there is "
                                               r"none \(ema.decay=null\)"):
        check_values(make_cfg(tmp_path, digits_cache, "eval_weights=ema"))
    check_values(make_cfg(tmp_path, digits_cache, "model=alexnet", "strategy=two_gpu_split", "ema.decay=0.999"))  # ok
    with pytest.raises(ConfigValueError, match=r"ema.decay=1 is not allowed: null, or a number in \(0, 1\)"):
        check_values(make_cfg(tmp_path, digits_cache, "ema.decay=1"))
    with pytest.raises(CheckpointError, match="x.ckpt holds no moving average of the weights"):
        checkpoint_weights({"state_dict": {}}, "ema", "x.ckpt")


def test_evaluate_and_export_take_the_average_when_asked(tmp_path, digits_cache):
    from trainer.train import train

    result = train(make_cfg(tmp_path / "run", digits_cache, *TINY, "model=resnet18", "model.input_size=64",
                            "ema.decay=0.9", "ema.every_n_steps=1", "eval_weights=ema"))
    ckpt = load_checkpoint(result["last_ckpt"])
    best = load_checkpoint(result["best_ckpt"])
    assert best["callbacks"]  # best.ckpt is chosen on the average's score under eval_weights=ema
    assert result["best/top1_err"] == min(h["val_ema/top1_err"] for h in
                                          ckpt["callbacks"]["RunRecord"]["val_history"])
    env = {"CONVNET_CACHE": str(digits_cache)}
    out = tmp_path / "ema.pth"
    done = run_cli("trainer.export", result["last_ckpt"], "--format", "torchvision", "--weights", "ema", "--out",
                   str(out), cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = torch.load(out, weights_only=True)
    assert all(torch.equal(v, ckpt["ema_state_dict"][f"net.{k}"]) for k, v in exported.items())
    assert not all(torch.equal(v, ckpt["state_dict"][f"net.{k}"]) for k, v in exported.items())
    evaluated = run_cli("trainer.evaluate", f"ckpt_path={result['last_ckpt']}", "eval_weights=ema", "logger=none",
                        "trainer.limit_val_batches=1", cwd=tmp_path, env=env, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"val top-1 error {result['val_ema/top1_err']:.2f} %" in evaluated.stdout, evaluated.stdout[:300]
