"""End-to-end training on the CPU: W&B offline run read back with the W&B CLI, resume, bad input."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import callback_in_runs, ctrl_c_at, library_lines, make_cfg, run_cli, wandb_inspect
from trainer.parallel import cpu_threads
from trainer.results.tracking import wandb_online_configured
from trainer.run.callbacks import NonFiniteLossError
from trainer.run.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    RunCheckpoint,
    checkpoint_weights,
    load_checkpoint,
)
from trainer.run.interrupt import RunInterrupted
from trainer.run.module import ClassifierModule
from trainer.train import train

TINY = ["trainer.limit_train_batches=5", "trainer.limit_val_batches=3", "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0"]


def run_dir(result) -> Path:
    return Path(result["wandb_dir"])


def test_short_run_logs_to_wandb_offline_and_checkpoints(tmp_path, digits_cache):
    result = train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=2", *TINY))
    assert result["global_step"] == 10 and result["epochs"] == 2
    assert 0.0 <= result["val/top1_err"] <= 100.0
    assert run_dir(result).parent == tmp_path / "run" / "wandb"  # the W&B run lives in the run's folder
    run = wandb_inspect(run_dir(result))
    summary, config = run["summary"], run["config"]
    assert run["state"] == "finished" and run["name"] == "lenet5-single-digits"
    assert summary["val/top1_err"]["last"] == pytest.approx(result["val/top1_err"], abs=1e-3)
    assert summary["val/top1_err"]["min"] == pytest.approx(result["best/top1_err"], abs=1e-3)  # define_metric
    for key in ("val/top5_err", "train/loss", "train/lr", "train/img_per_s", "train/epoch_time_s"):
        assert key in summary, key
    assert summary["train/lr"] == pytest.approx(0.0005, rel=1e-4)  # cosine over 2 epochs, after the first
    assert config["model"]["model_name"] == "lenet5" and re.fullmatch(r"[0-9a-f]{40}", config["git_commit"])
    assert config["packages"]["torch"] == torch.__version__.split("+")[0] and config["hardware"]["cpu_count"] >= 1
    assert isinstance(config["git_dirty"], bool) and config["hardware"]["gpu_count"] == torch.cuda.device_count()
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / name)  # weights_only: plain data only
        assert ckpt["hyper_parameters"]["model_name"] == "lenet5"
    assert load_checkpoint(result["last_ckpt"])["global_step"] == 10  # last is the latest, improved or not


def test_resume_continues_at_the_saved_step(tmp_path, digits_cache):
    halving = ["schedule=step", "schedule.scheduler.step_size=1", "schedule.scheduler.gamma=0.5", "logger=csv"]
    first = train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=1", *halving, *TINY))
    last = first["last_ckpt"]
    saved = load_checkpoint(last)
    assert saved["global_step"] == 5 and saved["epoch"] == 0
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.0005)
    second = train(make_cfg(tmp_path / "b", digits_cache, "trainer.max_epochs=3", *halving, f"ckpt_path={last}",
                            *TINY))
    assert second["global_step"] == 15 and second["epochs"] == 3  # 5 restored + 2 epochs of 5, not 3 x 5 again
    resumed = load_checkpoint(second["last_ckpt"])
    assert resumed["lr_schedulers"][0]["last_epoch"] == 3
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.000125)  # 0.001 / 2^3


def test_checkpoint_of_another_model_is_refused(tmp_path, digits_cache):
    first = train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=1", "logger=none", *TINY))
    cfg = make_cfg(tmp_path / "b", digits_cache, "model=resnet18", f"ckpt_path={first['last_ckpt']}", *TINY)
    with pytest.raises(CheckpointError, match="is a checkpoint of model=lenet5 with 10 classes, but this run is "
                                              "model=resnet18 with 10 classes"):
        train(cfg)
    cfg = make_cfg(tmp_path / "c", digits_cache, "data.num_classes=12", f"ckpt_path={first['last_ckpt']}", *TINY)
    with pytest.raises(CheckpointError, match="model=lenet5 with 10 classes, but this run is model=lenet5 with 12"):
        train(cfg)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_cannot_run_code(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name": "lenet5"}, "x": payload}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refusing to load .*evil.ckpt: it holds objects other than tensors"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not payload.marker.exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


class _FailsHalfway:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "state_dict": {"w": torch.ones(1000)}}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"step": 2, "state_dict": {"w": torch.zeros(1000)}, "bad": _FailsHalfway()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, digits_cache):
    # epoch 0 trains normally; the step schedule then multiplies the LR by 1e30 and the loss diverges
    cfg = make_cfg(tmp_path, digits_cache, "trainer.max_epochs=3", "logger=none", "schedule=step",
                   "schedule.scheduler.step_size=1", "schedule.scheduler.gamma=1e30", *TINY)
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf at global step (\d+) \(epoch 2\).*last good checkpoint "
                                                 r"is kept: .*last.ckpt") as err:
        train(cfg)
    step = int(re.search(r"global step (\d+)", str(err.value)).group(1))
    assert 6 <= step <= 10
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert kept["global_step"] == 5
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values())


def test_wandb_goes_online_only_when_set_up(monkeypatch, tmp_path):
    assert wandb_online_configured() is False
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_online_configured() is True
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_online_configured() is False
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY")
    (Path(os.environ["HOME"]) / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40)
    os.chmod(Path(os.environ["HOME"]) / ".netrc", 0o600)
    assert wandb_online_configured() is True


def test_cli_missing_data_folder_is_a_clear_error_before_anything_is_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("trainer", "model=alexnet", "trainer.max_epochs=1", cwd=work,
                     env={"IMAGENET_ROOT": str(tmp_path / "no-imagenet-here")}, timeout=300)
    assert result.returncode == 2
    assert (f"error: data.root={tmp_path / 'no-imagenet-here'} does not exist; expected ROOT/train/<class>/<image>"
            in result.stderr)
    assert "Traceback" not in result.stderr and list(work.iterdir()) == []  # no run folder, no W&B run


def run_job(folder: Path, cache: Path, *args: str, env: dict | None = None) -> tuple[Path, dict, object]:
    """Runs ``python -m trainer ARGS`` in an empty folder; returns its run folder, W&B summary and process."""
    folder.mkdir(parents=True, exist_ok=True)
    result = run_cli("trainer", *args, cwd=folder, env={"CONVNET_CACHE": str(cache), **(env or {})}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (folder / "outputs" / "lenet5").iterdir()  # the run's folder under the current directory
    (wandb_run,) = (run / "wandb").glob("offline-run-*")  # one W&B run, however many processes
    return run, wandb_inspect(wandb_run)["summary"], result


@pytest.fixture(scope="module")
def main_job(module_dir, digits_cache):
    """The README's main job as a user runs it, cut from 30 epochs to 8 (the full run's figures are the README's):
    `python -m trainer` in an empty folder, on a machine with Slurm's client installed (an `srun` on the PATH),
    as a login node or a workstation has."""
    slurm_client = module_dir / "slurm-client"
    slurm_client.mkdir()
    (slurm_client / "srun").write_text("#!/bin/sh\nexit 1\n")
    (slurm_client / "srun").chmod(0o755)
    return run_job(module_dir / "main", digits_cache, "trainer.max_epochs=8",
                   env={"PATH": f"{slurm_client}:{os.environ['PATH']}"})


def test_the_console_says_only_what_the_user_can_act_on(main_job):
    """The console is this tool's: the opening block, the epoch lines, the summary. The libraries' log lines
    go to run.log; W&B's banner and closing block are not printed (the summary says where the run is);
    Lightning's model summary (which listed the metric objects as layers) is the block's model line."""
    run, _, result = main_job
    console = result.stdout + result.stderr
    assert library_lines(console) == []  # the libraries' lines: run.log's, or filtered at their source
    for line in ("lenet5 / single / digits", "  model: lenet5 (LeCun et al. 1998), 60,000 trainable parameters, "
                 "input 1 x 32 x 32, 10 classes", "  runs on: 1 process(es)", "  recipe: experiment=default: "
                 "CosineAnnealingLR, 8 epochs; augmentation digits; seed 42", f"  run folder: {run}",
                 "  W&B: offline, "):
        assert line in console, line
    # torch's threads and why (trainer/parallel/cpu_threads.py): the suite's workers give theirs in OMP_NUM_THREADS
    # (a number an earlier in-process run chose for its own children, CHOSEN_HERE, is not the user's)
    users = "OMP_NUM_THREADS" in os.environ and not os.environ.get(cpu_threads.CHOSEN_HERE)
    why = "OMP_NUM_THREADS from the environment" if users else r"\d+ CPUs usable by this process"
    assert re.search(rf"^  CPU threads: torch \d+ per process \({why}", console, re.M), console[:3000]
    assert not re.search(r"^\[\d{4}-\d\d-\d\d ", console, re.M)  # no library's log line
    assert not re.search(r"^wandb:", console, re.M) and "Multiclass" not in console
    assert "GPU available: False" in (run / "run.log").read_text()  # kept there, for whoever needs them


def test_off_a_terminal_progress_lines_come_at_their_pace_whatever_the_step(tmp_path, digits_cache, capsys,
                                                                             monkeypatch):
    """A Slurm log between epochs: a line at the first step progress_every_s after the last, logging step or not,
    the first before the first logging step (step 10) has come; none at the epoch's last batch (its epoch line
    follows). The line's clock is made to advance 7 s a step: a slow step (VGG-16 on a CPU), without waiting."""
    from trainer.run.callbacks import progress_lines

    class SevenSecondsAStep:
        now = 0.0

        def perf_counter(self) -> float:  # called at the epoch's start and once a step
            self.now += 7.0
            return self.now

    monkeypatch.setattr(progress_lines, "time", SevenSecondsAStep())
    train(make_cfg(tmp_path, digits_cache, "progress_every_s=20", "trainer.max_epochs=1", "logger=none",
                   "trainer.limit_train_batches=30", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"))
    out = capsys.readouterr().out
    found = re.findall(r"^epoch 1/1 \[ *\d+ %\] step (\d+)/30, (\d+) img/s(, loss [\d.e+-]+)?, lr 0.001, "
                       r"(.+) left in the epoch$", out, re.M)
    assert [int(step) for step, *_ in found] == list(range(3, 30, 3)), out[-2000:]  # every 21 s: 3 steps
    assert [bool(loss) for _, _, loss, _ in found] == [False] * 3 + [True] * 6  # logged from step 10 on
    # 32 images a step in 7 s (4.6 img/s); the steps left at that pace ("3 min" at step 3, "21 s" at step 27)
    assert [(rate, left) for _, rate, _, left in found] == [("5", progress_lines._duration(7 * (30 - step)))
                                                            for step in range(3, 30, 3)]


def test_the_run_folder_keeps_what_the_console_showed(main_job):
    """console.log: the lines printed (before the folder existed too), the log records, one line per epoch
    (the progress bar shows nothing in a log file), no Hydra <job>.log beside it."""
    run, _, result = main_job
    copy = (run / "console.log").read_text()
    for line in ("IMAGENET_ROOT is not set: training on the embedded digits sample", "runs on: 1 process(es)",
                 "val top-1 error (final)", f"run folder:      {run}", "this run and the papers"):
        assert line in copy and line in result.stdout + result.stderr
    epochs = re.findall(r"^epoch (\d+)/8: val top-1 error [\d.]+ %", copy, re.M)
    assert epochs == [str(e) for e in range(1, 9)]
    assert "\x1b" not in copy and "━╸" not in copy and not re.search(r"^Epoch \d+/\d+", copy, re.M)
    assert not (run / "__main__.log").exists()


def test_on_a_terminal_the_copy_has_the_text_without_the_progress_bars_frames(tmp_path, digits_cache):
    """Under a terminal the bar is redrawn in place (colours, cursor moves); the copy keeps the text."""
    import pty

    main, terminal = pty.openpty()
    command = [sys.executable, "-m", "trainer", "logger=csv", "trainer.max_epochs=2", *TINY]
    job = subprocess.Popen(command, cwd=tmp_path, stdin=terminal, stdout=terminal, stderr=terminal,
                           env={**os.environ, "CONVNET_CACHE": str(digits_cache), "COLUMNS": "120"})
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the job ended
            break
        if not chunk:
            break
        shown += chunk
    assert job.wait(timeout=300) == 0, shown[-3000:]
    assert b"\x1b[" in shown and "━".encode() in shown  # the bar was drawn, with the terminal's controls
    (run,) = (tmp_path / "outputs" / "lenet5").iterdir()
    copy = (run / "console.log").read_text()
    assert "\x1b" not in copy and not re.search(r"^Epoch \d+/\d+", copy, re.M)
    assert re.findall(r"^epoch (\d)/2: val top-1", copy, re.M) == ["1", "2"]
    assert "runs on: 1 process(es)" in copy and "val top-1 error (final)" in copy


def test_the_main_job_learns_and_is_compared_with_the_paper(main_job):
    run, summary, result = main_job
    top1, top5 = summary["val/top1_err"]["last"], summary["val/top5_err"]["last"]
    print(f"main job: val top-1 {top1:.2f} % (best {summary['val/top1_err']['min']:.2f} %), top-5 {top5:.2f} %")
    assert "IMAGENET_ROOT is not set: training on the embedded digits sample" in result.stderr
    assert top1 <= 6.0  # 4.44 % after these 8 epochs (30: see the README)
    # the paper comparison: LeNet-5's MNIST figure, labelled as another data set
    assert summary["paper/top1_err"] == 0.95 and summary["paper/protocol"] == "center"
    assert summary["gap/top1_err"] == pytest.approx(top1 - 0.95, abs=1e-3)
    assert "this run and the papers" in result.stdout and "MNIST test" in result.stdout
    assert "this run's data (embedded digits) is not the paper's (MNIST test)" in " ".join(result.stdout.split())
    assert summary["epoch"] == 8 and (run / "checkpoints" / "best.ckpt").is_file()  # 8 epochs: epoch 8, from 1
    assert "val top-1 error (final)" in result.stdout and str(run / "checkpoints" / "best.ckpt") in result.stdout


def test_global_batch_must_divide_over_processes(tmp_path, digits_cache):
    """Refused once, before any process, folder or W&B run is started."""
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("trainer", "strategy=ddp", "trainer.devices=2", "data.batch_size=33", cwd=work,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 2
    message = ("error: data.batch_size=33 is the global batch and must divide evenly over the 2 data-parallel "
               "replicas; use a multiple of 2")
    assert result.stderr.count(message) == 1 and list(work.iterdir()) == []


def test_imagenet_root_alone_selects_imagenet(tmp_path):
    """With IMAGENET_ROOT set, the command a user types trains on that ImageNet-layout folder."""
    from PIL import Image

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in range(1000):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            Image.new("RGB", (48, 40), (c % 256, 50, 200)).save(folder / f"{split}_{c}.JPEG")
    result = run_cli("trainer", "model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=2", "data.batch_size=8", "data.num_workers=1", "logger=none",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"IMAGENET_ROOT": str(root)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lenet5 / single / imagenet" in result.stdout
    assert "embedded digits" not in result.stderr


# every switch that `auto` turns on on a GPU (trainer/parallel/fast_path.py), forced on here; and torch.compile
GPU_FAST_PATH = ["trainer.precision=bf16-mixed", "model.channels_last=true", "optim.fused=true",
                 "trainer.benchmark=true", "tf32=true"]


COMPILED = ["model.compile=true", "ema.decay=0.9", "ema.every_n_steps=1", "ema.adjust=false", "schedule=constant"]


@pytest.mark.parametrize("switches", [GPU_FAST_PATH, COMPILED])
def test_fast_path_and_compile_switches_train(tmp_path, digits_cache, switches):
    try:
        result = train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=1", "logger=none", *switches, *TINY))
    finally:
        torch.set_float32_matmul_precision("highest")  # process-wide: do not leak TF32 into later tests
    assert result["global_step"] == 5 and 0.0 <= result["val/top1_err"] <= 100.0
    if switches is COMPILED:  # the checkpoint holds the network's own names (not torch.compile's _orig_mod): every
        ckpt = load_checkpoint(result["last_ckpt"])  # command loads it, and a run resumes it compiled or not
        assert not [k for k in (*ckpt["state_dict"], *ckpt["ema_state_dict"]) if "_orig_mod" in k]
        ClassifierModule("lenet5", 10, 32, 1).load_state_dict(checkpoint_weights(ckpt, "ema"))  # strict
        resumed = train(make_cfg(tmp_path / "plain", digits_cache, "trainer.max_epochs=2", "logger=none",
                                 *COMPILED[1:], f"ckpt_path={result['last_ckpt']}", *TINY))
        assert resumed["global_step"] == 10


def test_a_cpu_checkpoint_resumes_with_channels_last_and_fused_sgd(tmp_path, digits_cache):
    """Written on a CPU (NCHW momentum), resumed on the GPU fast path (channels_last, fused SGD): the momentum
    takes the parameters' layout, which the fused and foreach kernels expect."""
    small = ["logger=none", "model=resnet18", "model.input_size=64", "data.batch_size=8",
             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "schedule=constant"]
    first = train(make_cfg(tmp_path / "a", digits_cache, "trainer.max_epochs=1", *small))
    saved = load_checkpoint(first["last_ckpt"])["optimizer_states"][0]["state"]
    assert all(v["momentum_buffer"].is_contiguous() for v in saved.values())
    resumed = train(make_cfg(tmp_path / "b", digits_cache, "trainer.max_epochs=2", "model.channels_last=true",
                             "optim.fused=true", f"ckpt_path={first['last_ckpt']}", *small))
    assert resumed["global_step"] == 4
    ckpt = load_checkpoint(resumed["last_ckpt"])
    weights = [v for v in ckpt["state_dict"].values() if v.dim() == 4]
    momenta = [v["momentum_buffer"] for v in ckpt["optimizer_states"][0]["state"].values()
               if v["momentum_buffer"].dim() == 4]
    assert len(momenta) == len(weights) == 20  # ResNet-18's convolutions
    assert all(m.is_contiguous(memory_format=torch.channels_last) for m in momenta)
    assert sum(not m.is_contiguous() for m in momenta) == 17  # NHWC, not NCHW (the 3 1x1 shortcuts are both)


@pytest.mark.gpu
@pytest.mark.dali
def test_the_main_job_trains_on_the_gpu_with_the_fast_path(tmp_path, digits_cache):
    result = run_cli("trainer", "trainer.max_epochs=3", "logger=none", "trainer.enable_progress_bar=false",
                     cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    assert "one CUDA device each" in out and "decoder mixed" in out
    assert f"precision {'bf16-mixed' if native_bf16 else '16-mixed'}" in out
    top1 = float(re.search(r"val top-1 error \(final\) │ ([\d.]+) %", out).group(1))
    assert top1 < 50.0, top1  # 3 epochs of the 30-epoch cosine job: well on the way (CPU: ~20 % after one)



def test_ctrl_c_mid_epoch_saves_and_resumes_exactly_like_an_uninterrupted_run(tmp_path, digits_cache):
    """Ctrl-C after step 13 of an epoch's 45: the run stops at the next step with last.ckpt for it, and
    resumed from it trains the remaining batches to the same weights as a run never interrupted."""
    common = ["trainer.max_epochs=1", "schedule=constant", "logger=none", "trainer.num_sanity_val_steps=0"]
    whole = train(make_cfg(tmp_path / "whole", digits_cache, *common))
    before = signal.getsignal(signal.SIGINT)  # Python's own, or SIG_IGN where the suite was started in the background

    with callback_in_runs(ctrl_c_at(13)), \
            pytest.raises(RunInterrupted, match=r"stopped by Ctrl-C \(SIGINT\) at global step 14 \(in epoch 1 of 1, "
                                                r"after 14 of its 45 batches\)") as stop:
        train(make_cfg(tmp_path / "stopped", digits_cache, *common))
    assert stop.value.exit_status == 130 and signal.getsignal(signal.SIGINT) is before  # the handler given back
    saved_path = tmp_path / "stopped" / "run" / "checkpoints" / "last.ckpt"
    assert f"checkpoint: {saved_path}" in str(stop.value) and f"ckpt_path={saved_path}" in str(stop.value)
    saved = load_checkpoint(saved_path)
    assert saved["global_step"] == 14
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == 14  # the reader's position

    resumed = train(make_cfg(tmp_path / "resumed", digits_cache, *common, f"ckpt_path={saved_path}"))
    assert resumed["global_step"] == whole["global_step"] == 45
    a, b = load_checkpoint(whole["last_ckpt"])["state_dict"], load_checkpoint(resumed["last_ckpt"])["state_dict"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"largest weight difference after resuming mid-epoch: {worst:.1e}")
    assert worst <= 1e-6


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_command_with_a_checkpoint_and_the_command_that_resumes(tmp_path, digits_cache, signum,
                                                                                  status):
    env = {**os.environ, "CONVNET_CACHE": str(digits_cache)}
    logger = [] if signum == signal.SIGINT else ["logger=none"]  # Ctrl-C: with W&B, and read back by the report
    job = subprocess.Popen([sys.executable, "-m", "trainer", "trainer.enable_progress_bar=false", *logger],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("outputs/lenet5/*/checkpoints/last.ckpt")):  # an epoch in: mid-run
        assert time.monotonic() < deadline and job.poll() is None, "the run wrote no checkpoint"
        time.sleep(0.2)
    job.send_signal(signum)
    _, err = job.communicate(timeout=120)
    assert job.returncode == status, err[-3000:]
    stopped = re.search(r"stopped by \S+(?: \(SIGINT\))? at global step (\d+) \((in epoch (\d+) of 30, "
                        r"after \d+ of its 45 batches|at the end of epoch (\d+) of 30)\); checkpoint: (\S+)\n"
                        r"resume with: (.+)", err)
    assert stopped and "Traceback" not in err
    step, ckpt, command = int(stopped.group(1)), stopped.group(5), stopped.group(6)
    assert load_checkpoint(ckpt)["global_step"] == step and command.endswith(f"ckpt_path={ckpt}")
    if signum == signal.SIGINT:  # the same epoch in W&B, the report and the resume; the printed command resumes
        mid_epoch, epoch = stopped.group(3) is not None, int(stopped.group(3) or stopped.group(4))
        (part,) = tmp_path.glob("outputs/lenet5/*/wandb/offline-run-*")
        record = wandb_inspect(part)
        assert record["state"] == "finished" and record["summary"]["stopped"].startswith("stopped by Ctrl-C")
        assert record["summary"]["epoch"] == epoch  # counted from 1, as the message counts
        report = run_cli("trainer.report", "outputs", "--out", "report", cwd=tmp_path, env=env, timeout=300)
        where = f"stopped in epoch {epoch} of 30" if mid_epoch else f"stopped after epoch {epoch} of 30"
        assert report.returncode == 0 and f"| {where} |" in (tmp_path / "report" / "report.md").read_text()
        args = shlex.split(command)[3:]  # after "python -m trainer"
        resumed = subprocess.run([sys.executable, "-m", "trainer", *args, f"trainer.max_steps={step + 5}"],
                                 cwd=tmp_path,
                                 env=env, capture_output=True, text=True, timeout=600)
        said = f"in epoch {epoch}, after" if mid_epoch else f"after epoch {epoch} ("
        assert resumed.returncode == 0 and f"resuming from {ckpt} {said}" in resumed.stdout, resumed.stderr[-3000:]
        assert library_lines(resumed.stdout + resumed.stderr) == []  # Lightning imported before Hydra: still run.log's


def test_validation_mid_epoch_and_the_sanity_check_leave_the_epoch_whole(tmp_path, digits_cache):
    result = train(make_cfg(tmp_path, digits_cache, "trainer.max_epochs=1", "trainer.val_check_interval=0.5",
                            "trainer.num_sanity_val_steps=2", "logger=csv"))
    assert result["global_step"] == 45  # 1,437 images / 32: no batch lost to the validation runs
    import csv

    (metrics,) = (tmp_path / "run").rglob("metrics.csv")
    errors = [float(r["val/top1_err"]) for r in csv.DictReader(open(metrics)) if r["val/top1_err"]]
    assert len(errors) == 2
    for err in errors:  # every one of the 360 val images counted: the error is a multiple of 1/360
        assert abs(err * 3.6 - round(err * 3.6)) < 1e-3, err


def test_a_resumed_run_keeps_its_wandb_run_id(tmp_path, digits_cache, capsys):
    first = train(make_cfg(tmp_path / "a", digits_cache, "trainer.max_epochs=1", "schedule=constant", *TINY))
    run_id = wandb_inspect(run_dir(first))["run_id"]
    assert load_checkpoint(first["last_ckpt"])["wandb_run_id"] == run_id
    second = train(make_cfg(tmp_path / "a", digits_cache, "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}",
                            "schedule=constant", *TINY))  # in its own folder, as the printed resume command does
    resumed = wandb_inspect(run_dir(second))
    assert resumed["run_id"] == run_id and resumed["summary"]["trainer/global_step"] == 9
    assert resumed["tags"] == ["lenet5", "single", "digits"]
    # the closing line names both parts of the W&B run, joined on upload under its id
    parts = second["wandb_parts"]
    # (W&B adds -1 to the second part's name when both starts fell in the same second)
    assert len(parts) == 2 and parts[-1] == second["wandb_dir"]
    assert all(re.search(rf"-{run_id}(-1)?$", p) for p in parts)
    assert f"upload: wandb sync --id {run_id} {parts[0]} {parts[1]})" in " ".join(capsys.readouterr().out.split())


def test_the_wandb_api_key_never_leaks(tmp_path, digits_cache):
    key = "f" * 8 + "0123456789abcdef0123456789abcdef"  # 40 characters, like a real key
    result = run_cli("trainer", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger.offline=true",
                     cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache), "WANDB_API_KEY": key}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert key not in result.stdout + result.stderr
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == [], leaked
    (wandb_run,) = (tmp_path / "outputs").rglob("offline-run-*")
    assert key not in str(wandb_inspect(wandb_run))


def test_the_run_record_tells_modified_code_from_untracked_files(tmp_path):
    """A report folder or a stray file beside the code is listed as untracked; only a change to tracked files
    makes the run `git_dirty`."""
    from trainer.results.tracking import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("table")
    assert git_state(tmp_path) | {"git_commit": None} == {"git_commit": None, "git_dirty": False,
                                                         "git_untracked": ["report/"]}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["git_dirty"] is True


def test_a_resume_that_extends_a_cosine_run_continues_it_and_never_raises_the_lr(tmp_path, digits_cache):
    """A 3-epoch cosine run stopped after 2 (trainer.max_steps), its folder then moved (scratch to storage),
    resumed to 6 epochs: refused while the plan differs silently; with schedule.replan=true it continues in the
    same run folder, the LR falls on from where it was and never rises, and best.ckpt is the best of all 6."""
    import csv
    import shutil

    work, env = tmp_path / "work", {"CONVNET_CACHE": str(digits_cache)}
    work.mkdir()
    common = ["logger=csv", "trainer.log_every_n_steps=5", "trainer.enable_progress_bar=false"]
    assert run_cli("trainer", *common, "trainer.max_epochs=3", "trainer.max_steps=90", cwd=work, env=env,
                   timeout=600).returncode == 0
    (first,) = (work / "outputs" / "lenet5").iterdir()
    run = Path(shutil.move(first, work / "kept"))
    last = run / "checkpoints" / "last.ckpt"

    refused = run_cli("trainer", *common, "trainer.max_epochs=6", f"ckpt_path={last}", cwd=work, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert ("error: this run's LR schedule differs from the checkpoint's (T_max=3 in the checkpoint, 6 now); "
            "resuming would change the learning rate's course without saying so. Either keep the checkpoint's "
            "plan (trainer.max_epochs=3), or re-plan the schedule from here with schedule.replan=true"
            ) in refused.stderr
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]

    resumed = run_cli("trainer", *common, "trainer.max_epochs=6", f"ckpt_path={last}", "schedule.replan=true",
                      cwd=work, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list((work / "outputs" / "lenet5").iterdir()) and f"run folder:      {run}" in resumed.stdout
    rows = [row for part in sorted(run.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(part.open())]
    lrs = [float(r["train/lr"]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get("train/lr")]
    assert len(lrs) >= 30 and all(later <= earlier * (1 + 1e-9) for earlier, later in zip(lrs, lrs[1:]))
    assert lrs[-1] > 0  # the last epoch still trains: the cosine reaches 0 only at the new end
    errors = [float(r["val/top1_err"]) for r in rows if r.get("val/top1_err")]
    assert len(errors) == 6  # both parts' epochs, in the one run folder
    states = load_checkpoint(last)["callbacks"]
    (best,) = [s for k, s in states.items() if "'monitor': 'val/top1_err'" in k]
    assert float(best["best_model_score"]) == pytest.approx(min(errors), abs=1e-4)
    assert best["best_model_path"] == str(run / "checkpoints" / "best.ckpt")
    assert "dirpath has changed" not in resumed.stderr


def test_a_moved_run_folder_keeps_its_best_score_and_a_fresh_folder_does_not_inherit_it(tmp_path):
    """Lightning drops the best score when the checkpoint's folder name differs; RunCheckpoint carries it
    over when the files it names are in the new folder (a moved run), not otherwise (a new run folder)."""
    old = tmp_path / "scratch" / "checkpoints"
    state = {"monitor": "val/top1_err", "best_model_score": torch.tensor(1.87), "dirpath": str(old),
             "best_model_path": str(old / "best.ckpt"), "best_k_models": {str(old / "best.ckpt"): torch.tensor(1.87)},
             "kth_best_model_path": str(old / "best.ckpt"), "kth_value": torch.tensor(1.87), "current_score": None,
             "last_model_path": str(old / "last.ckpt")}
    moved = tmp_path / "kept" / "checkpoints"
    moved.mkdir(parents=True)
    (moved / "best.ckpt").write_bytes(b"x")
    (moved / "last.ckpt").write_bytes(b"x")
    callback = RunCheckpoint(dirpath=moved, monitor="val/top1_err")
    callback.load_state_dict(state)
    assert float(callback.best_model_score) == pytest.approx(1.87)
    assert callback.best_model_path == str(moved / "best.ckpt")
    assert list(callback.best_k_models) == [callback.best_model_path]
    assert callback.last_model_path == str(moved / "last.ckpt")
    fresh = RunCheckpoint(dirpath=tmp_path / "new" / "checkpoints", monitor="val/top1_err")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        fresh.load_state_dict(state)
    assert fresh.best_model_score is None  # Lightning's own behaviour: that best.ckpt is not in this folder


def test_evaluating_a_run_logs_beside_it(main_job, tmp_path, digits_cache):
    """trainer.evaluate of a run's checkpoint keeps its log in that run's folder, in a folder of its own."""
    run, _, _ = main_job
    result = run_cli("trainer.evaluate", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "logger=none",
                     "trainer.enable_progress_bar=false", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)},
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (run / "evaluate").iterdir()
    assert folder.name.startswith("center_") and (folder / ".hydra" / "overrides.yaml").is_file()
    assert not (tmp_path / "outputs").exists()  # no folder of Hydra files under the current directory
