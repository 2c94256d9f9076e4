"""Fewer torch threads while other processes keep this process's CPUs busy (``cpu_threads: auto``).

On 2 cores two threads make LeNet-5 at 32 a step a quarter faster alone than one, and half as fast beside another
run (docs/speed.md, "CPU threads"): a thread spins on a core while the sibling it waits for is not scheduled. No
fixed number is right for both, so a run of one process on its node takes its share of the CPUs, and, while training,
looks every ``CHECK_EVERY_S`` at what the other processes did on those CPUs (``/proc/stat``'s ticks less this
process's and its children's): as many threads fewer as the CPUs they kept busy, at once; back up once the CPUs
have been free for ``QUIET_CHECKS`` checks in a row. Two such runs side by side each see the other's CPU and keep
one thread each; when one ends, the other takes its CPUs back.

The threads are set in the training loop's own thread (``torch.set_num_threads`` sets OpenMP's count for the
thread that calls it), in the batch hooks; reading ``/proc`` costs about 0.07 ms a check.
"""

import logging
import math
import time

import pytorch_lightning as pl
import torch

from .cpu_load import CpuLoad

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5  # 50 ticks of each CPU a check: the others' load to about a tenth of a CPU
QUIET_CHECKS = 2  # checks in a row with a CPU free before a thread comes back: a second
FIRST_CHECK_AFTER_S = 0.2  # the first count's window at least: 20 ticks of each CPU


class SharedCpus(pl.Callback):
    """torch's threads: ``alone`` while this process has its CPUs to itself, fewer while others keep them busy.

    Made where the run chooses its threads (``cpu_threads.take``), so that the start-up's ticks count; it keeps the
    seconds spent at each count (``seconds``) and says them at the end when the count went down.
    """

    def __init__(self, alone: int) -> None:
        self.alone = self.threads = alone
        self.load = CpuLoad()
        self.quiet, self.next_check = 0, 0.0
        self.seconds: dict[int, float] = {}
        self.since: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # the first count from the start-up's ticks, or, where the start-up since ``take`` was too short to read
        # them, from a short idle wait: what the others do while this process does nothing
        time.sleep(max(0.0, FIRST_CHECK_AFTER_S - self.load.seconds_since()))
        self.since = time.monotonic()
        self.check(self.since)

    def on_train_batch_end(self, *args) -> None:
        self.check_when_due()

    def on_validation_batch_end(self, *args) -> None:
        self.check_when_due()

    def check_when_due(self) -> None:
        """A check once ``CHECK_EVERY_S`` have passed, from training's start (not the sanity check's batches)."""
        if self.since is not None and (now := time.monotonic()) >= self.next_check:
            self.check(now)

    def check(self, now: float) -> None:
        self.next_check = now + CHECK_EVERY_S
        busy = math.floor(self.load.others() + 0.5)  # the CPUs other processes keep busy
        wanted = max(1, self.alone - busy)
        if wanted < self.threads:  # at once: two runs that both keep their threads stall each other
            self.set(wanted, now)
        elif wanted > self.threads:
            self.quiet += 1
            if self.quiet >= QUIET_CHECKS:
                self.set(wanted, now)
        else:
            self.quiet = 0

    def set(self, threads: int, now: float) -> None:
        self.seconds[self.threads] = self.seconds.get(self.threads, 0.0) + now - self.since
        self.threads, self.since, self.quiet = threads, now, 0
        torch.set_num_threads(threads)

    def on_train_end(self, trainer, pl_module) -> None:
        self.set(self.threads, time.monotonic())  # the last stretch counted
        if min(self.seconds) < self.alone:
            spent = ", ".join(f"{t} for {s:.1f} s" for t, s in sorted(self.seconds.items(), reverse=True) if s >= 0.05)
            log.info("CPU threads while training: torch %s (fewer while other processes kept this process's CPUs "
                     "busy)", spent)
