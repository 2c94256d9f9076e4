"""``strategy=two_gpu_split`` end to end: real CPU processes over gloo, launched as a user launches them."""

import re
from pathlib import Path

import pytest
import torch

from helpers import make_cfg, run_cli
from models import create_model
from trainer.run.checkpoints import load_checkpoint
from trainer.train import train

# two optimizer steps of a global batch of 8, one validation batch; gloo processes on the CPU
TINY = ["model=alexnet", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "data.batch_size=8", "logger=csv",
        "trainer.enable_progress_bar=false"]


def run(folder: Path, cache: Path, *args: str):
    """``python -m trainer TINY ARGS`` in ``folder``; returns the process and its last checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    result = run_cli("trainer", *TINY, *args, cwd=folder, env={"CONVNET_CACHE": str(cache)}, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (folder / "outputs" / "alexnet").iterdir()
    return result, load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def initial_alexnet(seed: int = 42) -> dict:
    """The weights every run starts from: the trainer seeds, then builds the model."""
    torch.manual_seed(seed)
    return {f"net.{k}": v for k, v in create_model("alexnet", num_classes=10).state_dict().items()}


def update_mismatch(a: dict, b: dict, start: dict) -> dict[str, float]:
    """Per tensor: how much the two runs' training updates differ, as a fraction of what float32 allows.

    Allowed: 1 % of the update's size plus 4 float32 roundings of the weights. The first layers'
    gradients are sums with heavy cancellation, so summing them in another order (grouped conv vs
    two towers) moves them by up to ~0.5 %; a bias that starts at 1.0 and moves by 1e-6 can differ
    by one rounding of 1.0 (6e-8). A real difference (another batch, another augmentation, gradients
    averaged with the wrong processes) is tens of percent.
    """
    eps = torch.finfo(torch.float32).eps
    out = {}
    for key, w0 in start.items():
        ua, ub = a["state_dict"][key] - w0, b["state_dict"][key] - w0
        allowed = 1e-2 * ub.abs().max() + 4 * eps * w0.abs().max()
        out[key] = ((ua - ub).abs().max() / allowed).item()
    return out


SPLIT_DEVICES = 4  # 2 pairs x 2 towers: each pair exchanges activations, the pairs average gradients as replicas do


@pytest.fixture(scope="module")
def split_run(module_dir, digits_cache):
    """Two pairs of towers, four CPU processes here, dropout off (so that it is the same computation as DDP of
    the grouped model). The paper's set-up, one pair, is the resume test's and the dead-tower test's."""
    return run(module_dir, digits_cache, "strategy=two_gpu_split",
               f"trainer.devices={SPLIT_DEVICES}", "model.dropout=0")


def says_once_it_runs_on_cpu(result, processes: int) -> None:
    notices = re.findall(rf"two_gpu_split: 0 GPU\(s\) here, {processes} needed: running the towers as {processes} "
                         r"CPU processes", result.stdout + result.stderr)
    assert len(notices) == 1
    assert "alexnet / two_gpu_split / digits" in result.stdout


def test_split_runs_as_cpu_processes_and_says_so_once(split_run):
    result, ckpt = split_run
    says_once_it_runs_on_cpu(result, SPLIT_DEVICES)
    assert ckpt["global_step"] == 2


def test_split_checkpoint_is_the_grouped_alexnet(split_run):
    _, ckpt = split_run
    net = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    create_model("alexnet", num_classes=10).load_state_dict(net)  # strict: every key and shape
    assert net["conv2.weight"].shape == (256, 48, 5, 5) and net["fc8.weight"].shape == (10, 4096)
    momentum = [s["momentum_buffer"] for s in ckpt["optimizer_states"][0]["state"].values()]
    assert [m.shape for m in momentum] == [p.shape for p in net.values()]  # optimizer state joined the same way


def test_split_and_single_checkpoints_resume_in_each_other(split_run, tmp_path, digits_cache):
    """Split -> single -> split; the last leg with the modern options that touch the towers (4 images x 2 batches
    a step, a moving average of the weights) against one process resuming the same checkpoint at 8 x 1: the same
    updates and the same average (the replica's no_sync window and the towers' exchanges compose; the average,
    restored whole, becomes each tower's half and is joined again in the checkpoint; validation scores it through
    the pair). Dropout off and centred digits (preset=mnist: the random placement's draws depend on the batch)."""
    _, ckpt = split_run
    path = tmp_path / "split.ckpt"
    torch.save(ckpt, path)
    extend = ["schedule.restart_lr=0.01"]  # the cosine ended at lr 0: each extension is a warm restart
    _, single = run(tmp_path / "single", digits_cache, "strategy=single", f"ckpt_path={path}",
                    "trainer.max_epochs=2", *extend)
    assert single["global_step"] == 4  # 2 restored + 2
    torch.save(single, path)
    same = [f"ckpt_path={path}", "trainer.max_epochs=3", *extend, "model.dropout=0", "data.preset=mnist",
            "optim.batch_size_for_lr=8", "ema.decay=0.5", "ema.every_n_steps=1", "ema.adjust=false", "eval_weights=ema"]
    result, back = run(tmp_path / "back", digits_cache, "strategy=two_gpu_split", *same, "data.batch_size=4",
                       "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=4")  # one pair, as in 2012
    says_once_it_runs_on_cpu(result, 2)
    assert "2 batches a step (gradients accumulated): effective batch 8" in result.stdout
    assert "EMA top-1" in result.stdout
    reference = load_checkpoint(train(make_cfg(tmp_path / "ref", digits_cache, *TINY, "strategy=single",
                                               *same))["last_ckpt"])
    assert back["global_step"] == reference["global_step"] == 6
    for kind in ("state_dict", "ema_state_dict"):
        mismatch = update_mismatch({"state_dict": back[kind]}, {"state_dict": reference[kind]}, single["state_dict"])
        worst = max(mismatch, key=mismatch.get)
        assert mismatch[worst] <= 1.0, (kind, worst, mismatch[worst])
    average = {k.removeprefix("net."): v for k, v in back["ema_state_dict"].items()}
    create_model("alexnet", num_classes=10).load_state_dict(average)  # strict: the grouped model's every tensor
    assert int(back["ema_averaging_state"]["n_averaged"]) == 2


def test_split_trains_exactly_like_data_parallel_alexnet(split_run, tmp_path, digits_cache):
    """With dropout off, N pairs of towers and N DDP replicas of the grouped model are the same computation:
    same shards, same augmentation, gradients averaged over N replicas."""
    replicas = SPLIT_DEVICES // 2
    _, ddp = run(tmp_path / "ddp", digits_cache, "strategy=ddp", f"trainer.devices={replicas}", "model.dropout=0")
    _, split = split_run
    mismatch = update_mismatch(split, ddp, initial_alexnet())
    worst = max(mismatch, key=mismatch.get)
    print(f"{replicas} pair(s) vs {replicas} DDP replica(s), 2 steps: worst {worst} at {mismatch[worst]:.2f} of "
          f"the float32 tolerance")
    assert mismatch[worst] <= 1.0, (worst, mismatch[worst])
    assert split["global_step"] == ddp["global_step"] == 2


@pytest.mark.parametrize("args, message", [
    (["model=lenet5"], "strategy=two_gpu_split splits the 2012 two-GPU AlexNet between two processes, but "
                       "model=lenet5; use model=alexnet, or strategy=ddp"),
    (["model=alexnet", "trainer.devices=3"], "strategy=two_gpu_split needs an even number of processes per node "
                                             "(each pair holds the two towers of one AlexNet), but trainer.devices=3"),
])
def test_bad_split_settings_are_refused_before_any_process_starts(tmp_path, digits_cache, args, message):
    result = run_cli("trainer", "strategy=two_gpu_split", *args, "logger=none", cwd=tmp_path,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 2
    assert f"error: {message}" in result.stderr and "Traceback" not in result.stderr
    assert "runs on:" not in result.stdout + result.stderr  # refused before the run began


def test_multirun_with_the_split_is_refused(tmp_path):
    result = run_cli("trainer", "-m", "model=alexnet", "strategy=two_gpu_split", "optim.lr=0.01,0.02",
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "error: Hydra multirun (-m) cannot be combined with strategy=two_gpu_split" in result.stderr


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                out.append((int(stat.parent.name), command))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return out


def test_a_dead_tower_stops_the_other_instead_of_hanging(tmp_path, digits_cache):
    """Kill the rank-1 process mid-training: rank 0 is waiting on it inside a collective and must exit, not hang."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trainer", "model=alexnet", "strategy=two_gpu_split",
                                 "logger=none", "trainer.enable_progress_bar=false"], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "CONVNET_CACHE": str(digits_cache)})
    try:
        deadline = time.monotonic() + 180
        while "runs on: 2 process(es)" not in log.read_text():  # both towers are up, in their process group
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(5)  # well inside the first epoch's collectives
        (child,) = [pid for pid, cmd in _children(proc.pid) if "train_ddp_process_1" in cmd]
        os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        returncode = proc.wait(timeout=120)
        waited = time.monotonic() - killed
    finally:
        proc.kill()
    print(f"rank 0 exited {waited:.1f} s after rank 1 was killed, code {returncode}")
    assert returncode != 0 and waited < 60


@pytest.mark.gpu(2)
@pytest.mark.dali
def test_the_split_trains_on_two_gpus_over_nccl(tmp_path, digits_cache):
    result = run_cli("trainer", "model=alexnet", "strategy=two_gpu_split", "trainer.max_epochs=1", "data.batch_size=32",
                     "trainer.limit_train_batches=10", "trainer.limit_val_batches=2", "logger=none",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)},
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "runs on: 2 process(es) = 1 node(s) x 2, one CUDA device each (TwoGPUSplitStrategy)" in out
    assert "running the towers as" not in out and "alexnet / two_gpu_split / digits" in out


def test_a_split_checkpoint_exports_as_the_grouped_alexnet(split_run, tmp_path):
    _, ckpt = split_run
    torch.save(ckpt, tmp_path / "split.ckpt")
    result = run_cli("trainer.export", str(tmp_path / "split.ckpt"), "--format", "torchvision", "--out",
                     str(tmp_path / "alexnet.pth"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "models.create_model('alexnet', num_classes=10, in_channels=3)" in result.stdout
    grouped = create_model("alexnet", num_classes=10)
    grouped.load_state_dict(torch.load(tmp_path / "alexnet.pth", weights_only=True))  # strict: the grouped network
    assert grouped.conv2.weight.shape == (256, 48, 5, 5)
