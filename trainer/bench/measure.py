"""Timing a training step: the trainer as a user runs it, and a bare PyTorch loop on the same batch."""

import tempfile
import time
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from models import create_model

from ..parallel import cpu_threads
from ..results import tracking
from ..train import build_logger, build_module, build_optimizer, build_trainer

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class StepTimer(pl.Callback):
    """Wall time of ``steps`` training steps after ``warmup`` ones (the device synchronised at both ends),
    and the CPU time the training thread spent in them (``cpu_elapsed``: what the host did, immune to
    other processes competing for the cores; with one torch thread, all of the step's CPU work).

    Epoch ends are left out (their checkpoint and, with real data, the next epoch's pipeline are not
    part of a step): the clock stops at an epoch's last step and restarts at the next one's first.

    ``together`` (``--beside``): the processes of one measurement start timing at once, after their warm-up,
    and each trains on, untimed, until the last one has timed its steps.

    ``threads``: the timed steps at each count of torch's threads (``cpu_threads: auto`` may change it while
    other processes keep the CPUs busy).
    """

    def __init__(self, warmup: int, steps: int, start: float, together=None) -> None:
        self.warmup, self.steps, self.start, self.together = warmup, steps, start, together
        self.first_step_s, self.t0, self.elapsed, self.done = None, None, 0.0, 0
        self.cpu0, self.cpu_elapsed = 0.0, 0.0
        self.threads: Counter[int] = Counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self.start
        if self.warmup <= self.done < self.warmup + self.steps and self.t0 is None:
            if self.together and self.done == self.warmup:
                self.together.wait_all("start")
            _sync(pl_module.device)
            self.t0, self.cpu0 = time.perf_counter(), time.thread_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.done += 1
        if self.t0 is not None:
            self.threads[torch.get_num_threads()] += 1
        finished = self.done == self.warmup + self.steps
        if self.t0 is not None and (finished or batch_idx + 1 == trainer.num_training_batches):
            _sync(pl_module.device)
            self.elapsed += time.perf_counter() - self.t0
            self.cpu_elapsed += time.thread_time() - self.cpu0
            self.t0 = None
        if finished and self.together:
            self.together.reached("done")
        if self.done >= self.warmup + self.steps and (not self.together or
                                                      self.together.count("done") >= self.together.processes):
            trainer.should_stop = True


class Repeat:
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


def synthetic_batch(cfg, device):
    """The synthetic batch, the same in every process (the two towers of a split pair must see one batch)."""
    generator = torch.Generator().manual_seed(0)
    shape = (cfg.data.batch_size, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    images = torch.randn(shape, generator=generator)
    labels = torch.randint(0, cfg.data.num_classes, (cfg.data.batch_size,), generator=generator)
    return images.to(device), labels.to(device)


def bench_trainer(cfg, warmup: int, steps: int, overrides: dict, real_data: bool = False) -> tuple[float, float, bool,
                                                                                                  int]:
    """Images/s of ``steps`` timed steps of the trainer (of this process: ``data.batch_size`` images a
    step; with ``real_data``, what the data config reads, through DALI), the seconds from start to its
    first step, whether this is the first process (a multi-process strategy runs this in every
    process), and the count of torch's threads most of the timed steps ran with."""
    from .beside import from_environment

    start = time.perf_counter()
    together = from_environment()
    module = build_module(cfg, scheduled=False)
    reset_peak_memory()
    with tempfile.TemporaryDirectory() as folder:
        if real_data:  # as many epochs as the steps need
            overrides = {**overrides, "max_epochs": -1, "max_steps": -1 if together else warmup + steps}
        trainer = build_trainer(cfg, Path(folder), build_logger(cfg, Path(folder)), **overrides)
        cpu_threads.take(cfg, trainer)  # as a run chooses them
        timer = StepTimer(warmup, steps, start, together)
        trainer.callbacks.append(timer)
        if real_data:
            trainer.fit(module, datamodule=instantiate(cfg.data))
        else:
            trainer.fit(module, train_dataloaders=Repeat(synthetic_batch(cfg, "cpu"), warmup + steps))
        tracking.finish(trainer.logger, exit_code=0)
    threads = timer.threads.most_common(1)[0][0] if timer.threads else torch.get_num_threads()
    return steps * cfg.data.batch_size / timer.elapsed, timer.first_step_s, trainer.is_global_zero, threads


def reset_peak_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_mb(device: torch.device) -> int | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None


def bench_bare(cfg, warmup: int, steps: int, device: torch.device, cpu_ms: list | None = None,
               network=None) -> float:
    """Images/s of the same training as a plain PyTorch loop (and its training thread's CPU milliseconds per
    step appended to ``cpu_ms``); ``network`` builds the network instead of the config's model."""
    reset_peak_memory()
    net, optimizer = _bare_model(cfg, device, network)
    images, labels = synthetic_batch(cfg, device)
    if cfg.model.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = AUTOCAST.get(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0, cpu0 = time.perf_counter(), time.thread_time()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    if cpu_ms is not None:
        cpu_ms.append(1000 * (time.thread_time() - cpu0) / steps)
    return steps * cfg.data.batch_size / (time.perf_counter() - t0)


def _bare_model(cfg, device: torch.device, network=None):
    net = network() if network else create_model(cfg.model.model_name, num_classes=cfg.data.num_classes,
                                                 in_channels=cfg.model.in_channels)
    net = net.to(device, memory_format=torch.channels_last if cfg.model.channels_last else torch.preserve_format)
    return net, build_optimizer(cfg)(params=net.parameters())
