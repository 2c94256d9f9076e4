"""``strategy=two_gpu_split`` with the modern recipe's options that touch the towers: accumulated batches and the
weights' moving average, against the grouped AlexNet in one process. (A file of its own: the split's end-to-end
file is the suite's longest, and the test workers take whole files.)"""

from test_two_gpu_split import TINY, initial_alexnet, run, update_mismatch

from helpers import make_cfg
from models import create_model
from trainer.run.checkpoints import load_checkpoint
from trainer.train import train


def test_a_split_pair_accumulating_with_an_average_trains_as_one_process(tmp_path, digits_cache):
    """One pair at 4 images x 2 batches a step, with a moving average of its weights, against the grouped AlexNet
    in one process at 8 x 1 with the same average: the same updates and the same average (the towers' exchanges
    and the replica's no_sync window compose; each tower averages its half, the checkpoint joins them; validation
    scores the average through the pair). Centred digits (preset=mnist): the random placement's draws depend on
    the batch."""
    same = ["model.dropout=0", "data.preset=mnist", "optim.batch_size_for_lr=8", "ema.decay=0.5",
            "ema.every_n_steps=1", "ema.adjust=false", "eval_weights=ema"]
    result, split = run(tmp_path / "split", digits_cache, "strategy=two_gpu_split", "data.batch_size=4",
                        "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=4", *same)
    single = load_checkpoint(train(make_cfg(tmp_path / "single", digits_cache, *TINY, *same))["last_ckpt"])
    assert "2 batches a step (gradients accumulated): effective batch 8" in result.stdout
    assert "EMA top-1" in result.stdout
    assert split["global_step"] == single["global_step"] == 2
    start = initial_alexnet()
    for kind in ("state_dict", "ema_state_dict"):
        mismatch = update_mismatch({"state_dict": split[kind]}, {"state_dict": single[kind]}, start)
        worst = max(mismatch, key=mismatch.get)
        assert mismatch[worst] <= 1.0, (kind, worst, mismatch[worst])
    average = {k.removeprefix("net."): v for k, v in split["ema_state_dict"].items()}
    create_model("alexnet", num_classes=10).load_state_dict(average)  # strict: the grouped model's every tensor
    assert int(split["ema_averaging_state"]["n_averaged"]) == 2
