"""``python -m trainer.bench [overrides]``: training throughput of this trainer against a bare PyTorch loop.

Both train the same model with the same optimizer, precision and in-memory synthetic batch
(``data.batch_size`` images at the model's input size): the trainer as a user runs it (the
LightningModule, its metrics, logging every ``trainer.log_every_n_steps``, the progress bar, the
checkpoint and NaN-guard callbacks), the bare loop as ``forward, loss, backward, step, zero_grad``.
After ``--warmup`` steps, ``--steps`` steps are timed, ``--repeats`` times; the median is reported,
with the time from start to the first training step and the peak memory. Both follow the fast path
(``trainer/fast_path.py``: on a GPU bf16, channels_last, cuDNN autotuning, TF32, fused SGD). It also
reports the model's training FLOPs per image (3x the forward pass that PyTorch's FLOP counter
counts) and, on a GPU whose peak Lightning knows, the model FLOPs utilisation (MFU: achieved FLOP/s
over the GPU's dense peak for the precision). The last line printed is one JSON object with
``trainer_img_s``, ``bare_img_s`` and ``ratio`` (trainer / bare).

A multi-process strategy (``strategy=ddp``, ``two_gpu_split``) runs in every process, each fed
``data.batch_size`` images a step; the first process times its steps and prints; the bare loop is
one process on one device.

    python -m trainer.bench                                  # lenet5, batch 256, 32x32, fp32 on a CPU
    python -m trainer.bench model=resnet18 data.batch_size=32 --steps 10
"""

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning_fabric.utilities.throughput import get_available_flops, measure_flops

from models import create_model

from .__main__ import exit_on_user_error
from .devices import check_gpus_usable
from .fast_path import resolve, runs_on_cuda
from .train import build_logger, build_optimizer, build_trainer, strategy_plan

CONF = Path(__file__).resolve().parents[1] / "conf"
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class _StepTimer(pl.Callback):
    """Wall time of ``steps`` training steps after ``warmup`` ones (the device synchronised at both ends).

    Epoch ends are left out (their checkpoint and, with real data, the next epoch's pipeline are not
    part of a step): the clock stops at an epoch's last step and restarts at the next one's first.
    """

    def __init__(self, warmup: int, steps: int, start: float) -> None:
        self.warmup, self.steps, self.start = warmup, steps, start
        self.first_step_s, self.t0, self.elapsed, self.done = None, None, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.start
        if self.warmup <= self.done < self.warmup + self.steps and self.t0 is None:
            _sync(pl_module.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.done += 1
        finished = self.done == self.warmup + self.steps
        if self.t0 is not None and (finished or batch_idx + 1 == trainer.num_training_batches):
            _sync(pl_module.device)
            self.elapsed += time.perf_counter() - self.t0
            self.t0 = None
        if finished:
            trainer.should_stop = True


class _Repeat:
    """The same in-memory batch, ``n`` times: an epoch of synthetic data with an exact length.

    On a GPU the batch is moved once to this process's device (Lightning has chosen it by the time
    the epoch starts), so that the trainer, like the bare loop, copies nothing per step.
    """

    def __init__(self, batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device())
            self.batch = tuple(t.to(device) for t in self.batch)
        return iter([self.batch] * self.n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(cfg, device):
    """The synthetic batch, the same in every process (the two towers of a split pair must see one batch)."""
    generator = torch.Generator().manual_seed(0)
    shape = (cfg.data.batch_size, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    images = torch.randn(shape, generator=generator)
    labels = torch.randint(0, cfg.data.num_classes, (cfg.data.batch_size,), generator=generator)
    return images.to(device), labels.to(device)


def bench_trainer(cfg, warmup: int, steps: int, overrides: dict, real_data: bool = False) -> tuple[float, float, bool]:
    """Images/s of ``steps`` timed steps of the trainer (of this process: ``data.batch_size`` images a
    step; with ``real_data``, what the data config reads, through DALI), the seconds from start to its
    first step, and whether this is the first process (a multi-process strategy runs this in every
    process)."""
    start = time.perf_counter()
    module = instantiate(cfg.model, optimizer=build_optimizer(cfg), scheduler=None)
    _reset_peak_memory()
    with tempfile.TemporaryDirectory() as folder:
        if real_data:  # as many epochs as the steps need
            overrides = {**overrides, "max_epochs": -1, "max_steps": warmup + steps}
        trainer = build_trainer(cfg, Path(folder), build_logger(cfg, Path(folder)), **overrides)
        timer = _StepTimer(warmup, steps, start)
        trainer.callbacks.append(timer)
        if real_data:
            trainer.fit(module, datamodule=instantiate(cfg.data))
        else:
            trainer.fit(module, train_dataloaders=_Repeat(_batch(cfg, "cpu"), warmup + steps))
        if trainer.logger and type(trainer.logger).__name__ == "WandbLogger":
            trainer.logger.experiment.finish()
    return steps * cfg.data.batch_size / timer.elapsed, timer.first_step_s, trainer.is_global_zero


def _reset_peak_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _peak_gpu_mb(device: torch.device) -> int | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None


def bench_bare(cfg, warmup: int, steps: int, device: torch.device) -> float:
    """Images/s of the same training as a plain PyTorch loop."""
    _reset_peak_memory()
    net, optimizer = _bare_model(cfg, device)
    images, labels = _batch(cfg, device)
    if cfg.model.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = AUTOCAST.get(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - t0)


def _bare_model(cfg, device: torch.device):
    net = create_model(cfg.model.model_name, num_classes=cfg.data.num_classes, in_channels=cfg.model.in_channels)
    net = net.to(device, memory_format=torch.channels_last if cfg.model.channels_last else torch.preserve_format)
    return net, build_optimizer(cfg)(params=net.parameters())


# H100 SXM's dense peaks (NVIDIA datasheet); the H200 has the same tensor cores and clocks
HOPPER_SXM_DENSE = {torch.float32: 66.9e12, "tfloat32": 494.7e12, torch.bfloat16: 989.4e12, torch.float16: 989.4e12}


def dense_peak_flops(device: torch.device, dtype) -> float | None:
    """The GPU's peak FLOP/s for ``dtype`` without sparsity, from Lightning's table of datasheet figures.

    Two corrections: Lightning's H200 and H100 NVL entries hold the 2:4-sparsity tensor-core
    figures (twice what dense training can reach), and it does not recognise a plain "NVIDIA H200".
    """
    name = torch.cuda.get_device_name(device).lower()
    if "h200" in name:
        return HOPPER_SXM_DENSE.get(dtype)
    peak = get_available_flops(device, dtype)
    if peak and "h100" in name and "nvl" in name and dtype in (torch.bfloat16, torch.float16, "tfloat32"):
        peak /= 2
    return peak


def training_flops_per_image(cfg) -> int:
    """FLOPs of training on one image: 3x the forward pass (the usual convention for MFU: the backward
    pass computes the gradients of both the inputs and the weights, each costing about one forward).

    The forward pass is counted by PyTorch's FLOP counter on the meta device (LeNet-5: 651,360; the
    multiply-adds of its layers, twice). Its backward count is not used: it over-counts grouped
    convolutions (the weight gradient is not divided by the groups), which AlexNet has.
    """
    with torch.device("meta"):
        net = create_model(cfg.model.model_name, num_classes=cfg.data.num_classes, in_channels=cfg.model.in_channels)
        image = torch.empty(1, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    return 3 * measure_flops(net, lambda: net(image))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., data.batch_size=..., ...)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    parser.add_argument("--real-data", action="store_true",
                        help="the trainer reads the data config (data=imagenet data.root=...) through DALI instead "
                             "of an in-memory batch: the full path against the bare loop's compute")
    args = parser.parse_intermixed_args(argv)  # options and overrides in any order
    defaults = ["model=lenet5", "data.batch_size=256", "logger=wandb", "logger.offline=true", "schedule=constant",
                "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "trainer.max_epochs=1",
                "paths.output_dir=.", "trainer.devices=1"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*defaults, *args.overrides])
    exit_on_user_error(lambda cfg: bench(cfg, args.warmup, args.steps, args.repeats, args.real_data), cfg)
    return 0


def bench(cfg, warmup: int, steps: int, repeats: int, real_data: bool = False) -> None:
    """Measures and prints (the first process only), the JSON line last."""
    check_gpus_usable(cfg.trainer.accelerator)
    overrides = strategy_plan(cfg)  # a strategy's checks before any process starts (Trainer overrides)
    cuda = runs_on_cuda(cfg, overrides.get("accelerator"))
    cfg, device = resolve(cfg, cuda=cuda), torch.device("cuda" if cuda else "cpu")
    print(f"{cfg.model.model_name}, batch {cfg.data.batch_size} of {cfg.model.in_channels}x{cfg.model.input_size}x"
          f"{cfg.model.input_size}, {cfg.trainer.precision}, {device}, {torch.get_num_threads()} threads; "
          f"{steps} steps after {warmup} warm-up, {repeats} repeats, median; trainer data: "
          f"{'DALI, ' + cfg.data.name if real_data else 'an in-memory batch'}", flush=True)
    trainer_rates, bare_rates, first_steps, peaks = [], [], [], {}
    for repeat in range(repeats):
        rate, first, first_process = bench_trainer(cfg, warmup, steps, overrides, real_data)
        if not first_process:  # the other processes only take part in the trainer's collective steps
            continue
        peaks["trainer"] = _peak_gpu_mb(device)
        trainer_rates.append(rate)
        first_steps.append(first)
        bare_rates.append(bench_bare(cfg, warmup, steps, device))
        peaks["bare"] = _peak_gpu_mb(device)
        print(f"repeat {repeat + 1}: trainer {rate:8.1f} img/s, bare loop {bare_rates[-1]:8.1f} img/s", flush=True)
    if not trainer_rates:
        return
    trainer_img_s, bare_img_s = statistics.median(trainer_rates), statistics.median(bare_rates)
    figures = {"model": cfg.model.model_name, "strategy": cfg.strategy.name, "batch_size": cfg.data.batch_size,
               "precision": cfg.trainer.precision, "device": str(device), "real_data": real_data, "trainer_img_s": round(trainer_img_s, 1), "bare_img_s": round(bare_img_s, 1),
               "ratio": round(trainer_img_s / bare_img_s, 3),
               "trainer_step_ms": round(1000 * cfg.data.batch_size / trainer_img_s, 2),
               "bare_step_ms": round(1000 * cfg.data.batch_size / bare_img_s, 2),
               "first_step_s": round(statistics.median(first_steps), 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    flops = training_flops_per_image(cfg)
    figures["train_flops_per_image"] = flops
    if device.type == "cuda":
        figures["peak_gpu_mb"], figures["bare_peak_gpu_mb"] = peaks["trainer"], peaks["bare"]
        peak = dense_peak_flops(device, AUTOCAST.get(cfg.trainer.precision, "tfloat32" if cfg.tf32 else torch.float32))
        if peak:  # None: a GPU missing from Lightning's table
            # a process of the split holds one tower, half of every layer: half the model's FLOPs per image
            per_gpu = flops / 2 if cfg.strategy.name == "two_gpu_split" else flops
            figures["gpu_peak_tflops"] = round(peak / 1e12, 1)
            figures["mfu"] = round(per_gpu * trainer_img_s / peak, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
