"""The fast path: no host read of device values between logging steps, the `auto` switches, the benchmark."""

import collections
import json
import signal
import traceback

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.overrides import TorchFunctionMode

from helpers import library_lines, make_cfg, run_cli
from trainer.bench.breakdown import LAYERS
from trainer.bench.measure import Repeat, synthetic_batch
from trainer.parallel.fast_path import resolve
from trainer.train import build_logger, build_optimizer, build_trainer

# Reading a tensor's value on the host; on a GPU each one waits for all the work queued before it.
# torch.tensor/as_tensor copy a host value to the device: on a GPU a blocking copy that waits too.
HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.__index__, torch.tensor, torch.as_tensor}


class HostReads(TorchFunctionMode):
    """Records every host read of a tensor, by the training batch it happened in."""

    def __init__(self) -> None:
        super().__init__()
        self.batch: int | None = None
        self.reads: dict[int, list[str]] = collections.defaultdict(list)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS and self.batch is not None:
            self.reads[self.batch].append(f"{func.__name__} at {traceback.format_stack(limit=4)[0].strip()}")
        return func(*args, **(kwargs or {}))


class MarkBatches(pl.Callback):
    """Tells the recorder which batch is running; on a GPU also turns on CUDA's sync check for the steps
    that do not log (an implicit sync there then raises)."""

    def __init__(self, mode: HostReads) -> None:
        self.mode = mode

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.mode.batch = batch_idx
        if torch.cuda.is_available() and batch_idx > 0:
            logs = (trainer.global_step + 1) % trainer.log_every_n_steps == 0
            torch.cuda.set_sync_debug_mode("default" if logs else "error")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.mode.batch = None
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_training_steps_read_nothing_from_the_device_between_logging_steps(tmp_path, digits_cache, device):
    """On a GPU the steps that do not log also run under CUDA's sync debug mode ("error"): any implicit sync
    there raises. In-memory batches: this needs no DALI (the GPU check's first stage runs it)."""
    # The run as a user has it: W&B logger, progress bar, checkpoint, NaN-guard and throughput callbacks.
    cfg = resolve(make_cfg(tmp_path, digits_cache, "trainer.enable_progress_bar=true", "trainer.max_epochs=1",
                           "trainer.log_every_n_steps=10", "trainer.limit_val_batches=0",
                           "trainer.num_sanity_val_steps=0", "data.batch_size=16",
                           f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}"),
                  cuda=device == "cuda")
    module = instantiate(cfg.model, optimizer=build_optimizer(cfg), scheduler=None)
    trainer = build_trainer(cfg, tmp_path, build_logger(cfg, tmp_path))
    recorder = HostReads()
    trainer.callbacks.insert(0, MarkBatches(recorder))
    try:
        with recorder:
            trainer.fit(module, train_dataloaders=Repeat(synthetic_batch(cfg, device), 40))
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
            resolve(cfg, cuda=False)
    trainer.logger.experiment.finish()
    assert trainer.global_step == 40 and module.device.type == device
    # Batch 0 sets up Lightning's metric state once; after that, only the logging steps read.
    steps_that_read = sorted(b for b in recorder.reads if b > 0)
    assert steps_that_read == [9, 19, 29, 39], {b: recorder.reads[b][:3] for b in steps_that_read}
    # ...and they do read: the recorder sees StepMetrics fetch the loss and the NaN guard read its flags.
    assert [r.split(" at ")[0] for r in recorder.reads[9]] == ["__float__", "__bool__"]


@pytest.mark.gpu
@pytest.mark.dali
def test_no_host_sync_between_logging_steps_with_the_real_dali_loader_on_the_gpu(tmp_path, digits_cache):
    """The same guarantee with the data as training reads it: DALI decoding on the GPU (`mixed`), batches
    on the device. Any implicit sync in a step that does not log raises (CUDA's sync debug mode)."""
    cfg = resolve(make_cfg(tmp_path, digits_cache, "trainer.enable_progress_bar=true", "trainer.max_epochs=1",
                           "trainer.log_every_n_steps=10", "trainer.limit_val_batches=0",
                           "trainer.limit_train_batches=40",
                           "trainer.num_sanity_val_steps=0", "data.batch_size=16", "trainer.accelerator=auto"),
                  cuda=True)
    module = instantiate(cfg.model, optimizer=build_optimizer(cfg), scheduler=None)
    trainer = build_trainer(cfg, tmp_path, build_logger(cfg, tmp_path))
    trainer.callbacks.insert(0, MarkBatches(HostReads()))
    datamodule = instantiate(cfg.data)
    try:
        trainer.fit(module, datamodule=datamodule)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        resolve(cfg, cuda=False)
    trainer.logger.experiment.finish()
    assert trainer.global_step == 40 and datamodule.decoder_for_device()[0] == "mixed"
    assert module.device.type == "cuda"


def test_the_loss_is_logged_on_every_logging_step_and_only_there(tmp_path, digits_cache):
    """The module logs the loss only on the steps the logger writes (self.log costs ~0.35 ms a call):
    the CSV logger gets it exactly on those steps, with the learning rate and the throughput."""
    import csv

    from trainer.train import train

    result = train(make_cfg(tmp_path, digits_cache, "logger=csv", "trainer.max_epochs=1", "trainer.log_every_n_steps=5",
                            "trainer.limit_train_batches=25", "trainer.limit_val_batches=1"))
    assert result["global_step"] == 25
    (metrics,) = (tmp_path / "run").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    steps = {key: [int(r["step"]) for r in rows if r.get(key)] for key in ("train/loss", "train/lr", "train/img_per_s")}
    assert steps["train/loss"] == steps["train/lr"] == steps["train/img_per_s"] == [4, 9, 14, 19, 24]
    assert all(float(r["train/loss"]) > 0 for r in rows if r.get("train/loss"))


def test_auto_switches_follow_the_machine(tmp_path, digits_cache):
    cfg = make_cfg(tmp_path, digits_cache, "model=alexnet")
    assert (cfg.trainer.precision, cfg.model.channels_last, cfg.optim.fused, cfg.tf32) == ("auto",) * 4
    cpu = resolve(cfg, cuda=False)
    assert (cpu.trainer.precision, cpu.trainer.benchmark, cpu.model.channels_last, cpu.optim.fused, cpu.tf32) == \
        ("32-true", False, False, False, False)
    assert torch.get_float32_matmul_precision() == "highest" and cfg.trainer.precision == "auto"  # cfg untouched
    gpu = resolve(cfg, cuda=True)
    assert gpu.trainer.precision == ("bf16-mixed" if torch.cuda.is_available() and
                                     torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed")
    assert (gpu.trainer.benchmark, gpu.model.channels_last, gpu.optim.fused, gpu.tf32) == (True, True, True, True)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    # a value the user set is kept; a deterministic run is not autotuned
    given = resolve(make_cfg(tmp_path, digits_cache, "trainer.precision=32-true", "model.channels_last=false",
                             "trainer.deterministic=true", "tf32=false"), cuda=True)
    assert (given.trainer.precision, given.model.channels_last, given.trainer.benchmark, given.tf32) == \
        ("32-true", False, False, False)
    resolve(cfg, cuda=False)  # leave the process-wide switches as the CPU tests expect them


@pytest.mark.parametrize("gpu, native_bf16, precision", [("A100", True, "bf16-mixed"), ("V100", False, "16-mixed"),
                                                         ("T4", False, "16-mixed")])
def test_auto_precision_is_bf16_only_where_it_is_native(tmp_path, digits_cache, monkeypatch, gpu, native_bf16,
                                                        precision):
    # torch's check counts emulation unless told not to: on a V100 or T4 it says yes by default
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16 or
                        including_emulation)
    try:
        assert resolve(make_cfg(tmp_path, digits_cache), cuda=True).trainer.precision == precision, gpu
    finally:
        resolve(make_cfg(tmp_path, digits_cache), cuda=False)


@pytest.mark.parametrize("real_data", [False, True], ids=["in-memory", "real-data"])
def test_the_trainer_benchmark_runs_in_quick_mode(tmp_path, digits_cache, real_data):
    # real data: the digits through DALI, 1,437 images at 256 a step: 6 steps an epoch, so the timed
    # steps cross an epoch's end
    args = ["--real-data", "--steps", "8", "data.batch_size=256"] if real_data else ["--steps", "3",
                                                                                     "data.batch_size=32"]
    result = run_cli("trainer.bench", "--warmup", "2", "--repeats", "1", "trainer.enable_progress_bar=false", *args,
                     cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["model"] == "lenet5" and figures["device"] == "cpu" and figures["real_data"] is real_data
    assert figures["batch_size"] == (256 if real_data else 32)
    assert figures["precision"] == "32-true"  # `auto` on a CPU
    assert figures["trainer_img_s"] > 0 and figures["bare_img_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["trainer_img_s"] / figures["bare_img_s"], rel=0.01)
    assert figures["first_step_s"] > 0 and figures["peak_rss_mb"] > 0
    assert library_lines(result.stdout + result.stderr) == []  # no W&B banner for a temporary folder, no Lightning INFO
    # LeNet-5's multiply-adds: C1 117,600 + C3 150,000 + C5 48,000 + F6 10,080, x2 forward, x3 with backward
    assert figures["train_flops_per_image"] == 3 * 2 * (117_600 + 150_000 + 48_000 + 10_080)


def test_the_benchmark_refuses_what_the_strategy_cannot_run(tmp_path):
    result = run_cli("trainer.bench", "strategy=two_gpu_split", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: strategy=two_gpu_split splits the 2012 two-GPU AlexNet between two processes, but model=lenet5" \
        in result.stderr
    # SDLM's step needs a curvature estimate that the bare loop never makes (it crashed with a traceback)
    result = run_cli("trainer.bench", "experiment=lenet5_1998", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: trainer.bench times the step against a bare PyTorch loop, which has no curvature estimate for " \
           "optim=sdlm" in result.stderr


def test_lightnings_per_step_sigterm_broadcast_is_switched_off_for_the_runs_own_stop_path(tmp_path, digits_cache):
    # Lightning broadcasts and reads a SIGTERM flag before every step of a multi-process run (a sync per step on
    # GPUs) and ends the run from its own handler's flag; the trainer's StopOnSignal agrees on the logging steps
    cfg = resolve(make_cfg(tmp_path, digits_cache, "strategy=ddp", "trainer.devices=2"), cuda=False)
    trainer = build_trainer(cfg, tmp_path, logger=False)  # built, not launched
    before = signal.getsignal(signal.SIGTERM)
    trainer._signal_connector.register_signal_handlers()
    assert signal.getsignal(signal.SIGTERM) is before  # Lightning installs no handler of its own
    assert trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor() is None  # and broadcasts nothing


def test_the_breakdown_times_every_layer_of_the_trainer(tmp_path):
    result = run_cli("trainer.bench", "--breakdown", "--tiny-net", "--warmup", "2", "--steps", "5", "--repeats", "1",
                     "--threads", "1", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rows = figures["rows"]
    assert [r["layer"] for r in rows] == list(LAYERS) and figures["model"] == "tiny"
    assert rows[0]["over_bare_ms"] == 0 and all(r["step_ms"] > 0 and r["cpu_ms"] > 0 for r in rows)
    assert figures["overhead_ms_per_step"] == rows[-1]["over_bare_ms"]
    assert "+ progress bar, model summary (the trainer)" in result.stdout  # the table, before the JSON


def test_lightnings_profiler_is_replaced_unless_one_is_asked_for(tmp_path, digits_cache):
    from pytorch_lightning.profilers import SimpleProfiler

    from trainer.parallel.fast_path import NoProfiler

    quiet = build_trainer(resolve(make_cfg(tmp_path, digits_cache), cuda=False), tmp_path, logger=False)
    asked = build_trainer(resolve(make_cfg(tmp_path, digits_cache, "+trainer.profiler=simple"), cuda=False), tmp_path,
                          logger=False)
    assert isinstance(quiet.profiler, NoProfiler) and isinstance(asked.profiler, SimpleProfiler)
    with quiet.profiler.profile("a hook"):  # a no-op scope, shared
        pass
    assert quiet.profiler.profile("a") is quiet.profiler.profile("b")
