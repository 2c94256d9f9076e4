"""``python -m trainer.bench [overrides]``: training throughput of this trainer against a bare PyTorch loop.

Both train the same model with the same optimizer, precision and in-memory synthetic batch
(``data.batch_size`` images at the model's input size): the trainer as a user runs it (the
LightningModule, its metrics, logging every ``trainer.log_every_n_steps``, the progress bar, the
checkpoint and NaN-guard callbacks), the bare loop as ``forward, loss, backward, step, zero_grad``.
After ``--warmup`` steps, ``--steps`` steps are timed, ``--repeats`` times; the median is reported,
with the time from start to the first training step and the peak memory. The last line printed is
one JSON object with ``trainer_img_s``, ``bare_img_s`` and ``ratio`` (trainer / bare).

    python -m trainer.bench                                  # lenet5, batch 256, 32x32, fp32
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

CONF = Path(__file__).resolve().parents[1] / "conf"
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class _StepTimer(pl.Callback):
    """Wall time of the training steps after the warm-up (the device synchronised at both ends)."""

    def __init__(self, warmup: int, steps: int, start: float) -> None:
        self.warmup, self.last, self.start = warmup, warmup + steps - 1, start
        self.first_step_s, self.t0, self.elapsed = None, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.start
        if batch_idx == self.warmup:
            _sync(pl_module.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.last:  # before the epoch-end checkpoint, which is not part of a step
            _sync(pl_module.device)
            self.elapsed = time.perf_counter() - self.t0


class _Repeat:
    """The same in-memory batch, ``n`` times: an epoch of synthetic data with an exact length."""

    def __init__(self, batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter([self.batch] * self.n)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(cfg, device):
    shape = (cfg.data.batch_size, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    return torch.randn(shape, device=device), torch.randint(0, cfg.data.num_classes, (cfg.data.batch_size,),
                                                            device=device)


def bench_trainer(cfg, warmup: int, steps: int) -> tuple[float, float]:
    """Images/s of ``steps`` timed steps of the trainer, and the seconds from start to its first step."""
    from .train import build_logger, build_optimizer, build_trainer

    start = time.perf_counter()
    batch = _batch(cfg, "cpu")
    module = instantiate(cfg.model, optimizer=build_optimizer(cfg), scheduler=None)
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(cfg, Path(folder), build_logger(cfg, Path(folder)))
        timer = _StepTimer(warmup, steps, start)
        trainer.callbacks.append(timer)
        trainer.fit(module, train_dataloaders=_Repeat(batch, warmup + steps))
        if trainer.logger and type(trainer.logger).__name__ == "WandbLogger":
            trainer.logger.experiment.finish()
    return steps * cfg.data.batch_size / timer.elapsed, timer.first_step_s


def bench_bare(cfg, warmup: int, steps: int, device: torch.device) -> float:
    """Images/s of the same training as a plain PyTorch loop."""
    from models import create_model

    from .train import build_optimizer

    net = create_model(cfg.model.model_name, num_classes=cfg.data.num_classes,
                       in_channels=cfg.model.in_channels).to(device)
    optimizer = build_optimizer(cfg)(params=net.parameters())
    images, labels = _batch(cfg, device)
    dtype = AUTOCAST.get(cfg.trainer.precision)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., data.batch_size=..., ...)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    defaults = ["model=lenet5", "data.batch_size=256", "logger=wandb", "logger.offline=true", "schedule=constant",
                "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "trainer.max_epochs=1",
                "paths.output_dir=.", "trainer.devices=1"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*defaults, *args.overrides])
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")
    print(f"{cfg.model.model_name}, batch {cfg.data.batch_size} of {cfg.model.in_channels}x{cfg.model.input_size}x"
          f"{cfg.model.input_size}, {cfg.trainer.precision}, {device}, {torch.get_num_threads()} threads; "
          f"{args.steps} steps after {args.warmup} warm-up, {args.repeats} repeats, median", flush=True)
    trainer_rates, bare_rates, first_steps = [], [], []
    for repeat in range(args.repeats):
        rate, first = bench_trainer(cfg, args.warmup, args.steps)
        trainer_rates.append(rate)
        first_steps.append(first)
        bare_rates.append(bench_bare(cfg, args.warmup, args.steps, device))
        print(f"repeat {repeat + 1}: trainer {rate:8.1f} img/s, bare loop {bare_rates[-1]:8.1f} img/s", flush=True)
    trainer_img_s, bare_img_s = statistics.median(trainer_rates), statistics.median(bare_rates)
    figures = {"model": cfg.model.model_name, "batch_size": cfg.data.batch_size, "precision": cfg.trainer.precision,
               "device": str(device), "trainer_img_s": round(trainer_img_s, 1), "bare_img_s": round(bare_img_s, 1),
               "ratio": round(trainer_img_s / bare_img_s, 3),
               "trainer_step_ms": round(1000 * cfg.data.batch_size / trainer_img_s, 2),
               "bare_step_ms": round(1000 * cfg.data.batch_size / bare_img_s, 2),
               "first_step_s": round(statistics.median(first_steps), 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
