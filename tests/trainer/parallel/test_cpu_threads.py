"""torch's CPU threads per training process (trainer/parallel/cpu_threads.py) and the --beside benchmark."""

import json
import os
import subprocess
import sys

import pytest

from helpers import PROJECT, run_cli
from trainer.parallel import cpu_threads


def choose_in_a_process(cpus: set[int], *args, env: dict | None = None) -> tuple[int, str]:
    """``cpu_threads.choose(*args)`` in a fresh process pinned to ``cpus`` (a real affinity mask, as Slurm or
    taskset set one)."""
    code = (f"import os, json; os.sched_setaffinity(0, {sorted(cpus)!r}); "
            f"from trainer.parallel.cpu_threads import choose; print(json.dumps(choose(*{args!r})))")
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", cpu_threads.CHOSEN_HERE)}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env={**environ, **(env or {})},
                         capture_output=True, text=True, check=True).stdout
    return tuple(json.loads(out))


@pytest.mark.skipif(os.cpu_count() < 2, reason="pins a process to one of two CPUs")
def test_auto_takes_the_cpus_of_the_affinity_mask_less_dalis_decoding_threads():
    every = set(range(os.cpu_count()))
    threads, how = choose_in_a_process(every, "auto", 1, 0, 1e12)  # a big step, DALI idle (the digit sets)
    assert (threads, how) == (len(every), f"{len(every)} CPUs usable by this process")
    threads, how = choose_in_a_process(every, "auto", 1, 1, 1e12)  # DALI decodes JPEGs on one thread
    assert (threads, how) == (len(every) - 1, f"{len(every)} CPUs usable by this process, less DALI's 1 decoding")
    threads, how = choose_in_a_process({0}, "auto", 1, 1, 1e12)  # pinned to one CPU: never fewer than one
    assert (threads, how) == (1, "1 CPUs usable by this process, less DALI's 1 decoding")
    # unpinned, the node's processes divide the machine (Lightning's rule for DDP)
    threads, how = choose_in_a_process(every, "auto", len(every), 0, 1e12)
    assert threads == 1 and f"shared by {len(every)} processes" in how


def test_a_small_step_gets_one_thread_and_a_given_number_wins():
    threads, how = choose_in_a_process(set(range(os.cpu_count())), "auto", 1, 0, 8e6)
    assert threads == 1 and how.endswith("a step of 8 MFLOPs runs fastest on one")
    # LeNet-5 at 32 a step (62 MFLOPs) still gets one; at 64 a step (124 MFLOPs) the CPUs' share
    assert choose_in_a_process(set(range(os.cpu_count())), "auto", 1, 0, 62e6)[0] == 1
    assert choose_in_a_process(set(range(os.cpu_count())), "auto", 1, 0, 124e6)[0] == os.cpu_count()
    assert choose_in_a_process({0}, 3, 1, 1, 8e6) == (3, "cpu_threads=3")
    # the user's OMP_NUM_THREADS is kept; one the trainer set for its own processes is chosen again
    assert choose_in_a_process({0}, "auto", 1, 0, 8e6, env={"OMP_NUM_THREADS": "2"}) == \
        (2, "OMP_NUM_THREADS from the environment")
    assert choose_in_a_process({0}, "auto", 1, 0, 8e6, env={"OMP_NUM_THREADS": "2", cpu_threads.CHOSEN_HERE: "1"})[0] \
        == 1


def test_the_beside_benchmark_times_one_process_alone_and_two_at_once(tmp_path, digits_cache):
    result = run_cli("trainer.bench", "--beside", "2", "--warmup", "2", "--steps", "5", "--repeats", "1",
                     "data.batch_size=4", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["beside"] == 2 and figures["alone_img_s"] > 0 and figures["beside_img_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["beside_img_s"] / figures["alone_img_s"], abs=0.001)
    assert figures["cpu_threads"] == 1  # LeNet-5 at 4 a step: a small step (and the suite's workers give 1)
    assert lines[-4].split() == ["processes", "img/s", "each", "of", "alone"]
    assert lines[-2].split()[0] == "2" and float(lines[-2].split()[2]) == pytest.approx(figures["ratio"], abs=0.01)
    assert [p.name for p in tmp_path.iterdir()] == ["home"], "the benchmark leaves nothing where it runs"
    refused = run_cli("trainer.bench", "--beside", "1", cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "--beside 1: give the number of processes to run at once, 2 or more" in \
        refused.stderr
