"""Fewer torch threads while other processes keep the CPUs busy (trainer/parallel/shared_cpus.py, cpu_load.py)."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from helpers import PROJECT
from trainer.parallel import cpu_threads
from trainer.parallel.cpu_load import TICKS_PER_S, _tree_ticks
from trainer.parallel.shared_cpus import SharedCpus

SPIN = [sys.executable, "-c", "while True: pass"]


def own_ticks() -> int:
    with open("/proc/self/stat") as f:
        return sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])


def test_a_process_trees_ticks_hold_its_ended_and_its_live_children():
    before = _tree_ticks(os.getpid())
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                                          "while time.process_time() - t < 0.4: pass"], check=True)
    assert _tree_ticks(os.getpid()) - before >= 0.35 * TICKS_PER_S  # an ended child's time: in cutime
    live = subprocess.Popen(SPIN)
    try:
        time.sleep(0.6)
        mine, its = own_ticks(), _tree_ticks(live.pid)
        assert its >= 0.1 * TICKS_PER_S and _tree_ticks(os.getpid()) >= mine + its
    finally:
        live.kill()
        live.wait()


def test_the_load_of_other_processes_is_measured_on_this_processs_cpus():
    """A process that spins beside one that sleeps: the sleeper sees (at least) it, as CPUs kept busy."""
    spinner = subprocess.Popen(SPIN)  # not the measuring process's child: company
    try:
        code = ("import json, time; from trainer.parallel.cpu_load import CpuLoad; load = CpuLoad(); time.sleep(1); "
                "print(json.dumps(load.others()))")
        out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.5 <= json.loads(out.stdout) <= os.cpu_count() + 0.2


class ScriptedLoad:
    """The others' load a check reads, in turn (what CpuLoad measures, given)."""

    def __init__(self, loads: list[float]) -> None:
        self.loads = list(loads)

    def others(self) -> float:
        return self.loads.pop(0)

    def seconds_since(self) -> float:
        return 1.0


@pytest.fixture
def torch_threads():
    kept = torch.get_num_threads()
    yield
    torch.set_num_threads(kept)


def test_threads_go_down_at_once_and_come_back_after_quiet_checks(torch_threads):
    watch = SharedCpus(2)
    watch.load = ScriptedLoad([0.1, 1.2, 0.9, 0.3, 0.2, 0.0, 1.6, 2.5, 0.4])
    watch.on_train_start(None, None)  # the start-up's load decides the first count
    start = watch.since
    counts = [watch.threads]
    for second in range(1, 9):
        watch.check(start + second)
        counts.append((watch.threads, torch.get_num_threads()))
    # 0.1 CPU busy: 2; 1.2 and 0.9: one CPU taken, 1 at once; 0.3, 0.2: free twice in a row, then 2; 1.6 and 2.5:
    # both CPUs busy, never fewer than 1; 0.4 once: not yet back
    assert counts == [2, (1, 1), (1, 1), (1, 1), (2, 2), (2, 2), (1, 1), (1, 1), (1, 1)]
    watch.set(watch.threads, start + 9)
    assert watch.seconds == {2: 1 + 2, 1: 3 + 3}
    wide = SharedCpus(4)  # a share of 4: as many fewer as the CPUs others keep busy
    wide.load = ScriptedLoad([1.4])
    wide.on_train_start(None, None)
    assert wide.threads == 3 == torch.get_num_threads()


@pytest.mark.skipif(os.cpu_count() < 2, reason="a run of one thread has none to give up")
def test_a_run_beside_a_busy_process_trains_on_fewer_threads_and_says_so(tmp_path, digits_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", cpu_threads.CHOSEN_HERE)}
    cpus = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen(SPIN)  # another process on the run's CPUs
    try:
        result = subprocess.run([sys.executable, "-m", "trainer", "model=lenet5", "data.batch_size=32", "logger=none",
                                 "trainer.max_steps=90", "trainer.enable_progress_bar=false"], cwd=tmp_path,
                                env={**env, "CONVNET_CACHE": str(digits_cache)}, capture_output=True, text=True,
                                timeout=300)
    finally:
        spinner.kill()
        spinner.wait()
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert f"  CPU threads: torch {cpus} per process ({cpus} CPUs usable by this process; fewer while other " \
           f"processes keep them busy)" in console
    spent = re.search(r"^CPU threads while training: torch (.*) \(fewer while other processes kept this process's "
                      r"CPUs busy\)$", console, re.M)
    assert spent, console[-3000:]
    counts = dict(re.fullmatch(r"(\d+) for ([\d.]+) s", part).groups() for part in spent.group(1).split(", "))
    assert min(map(int, counts)) < cpus and all(float(s) >= 0.05 for s in counts.values())
