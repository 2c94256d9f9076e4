"""torch's CPU threads per training process (trainer/parallel/cpu_threads.py) and the --beside benchmark."""

import json
import os
import subprocess
import sys

import pytest

from helpers import PROJECT, run_cli
from trainer.parallel import cpu_threads


def choose_in_a_process(cpus: set[int], *args, env: dict | None = None) -> list:
    """``cpu_threads.choose(*args)`` in a fresh process pinned to ``cpus`` (a real affinity mask, as Slurm or
    taskset set one)."""
    code = (f"import os, json; os.sched_setaffinity(0, {sorted(cpus)!r}); "
            f"from trainer.parallel.cpu_threads import choose; print(json.dumps(choose(*{args!r})))")
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", cpu_threads.CHOSEN_HERE)}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env={**environ, **(env or {})},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # [threads, how, follows the CPUs' load]


@pytest.mark.skipif(os.cpu_count() < 2, reason="pins a process to one of two CPUs")
def test_auto_takes_the_cpus_of_the_affinity_mask_less_dalis_decoding_threads():
    every = set(range(os.cpu_count()))
    shared = "; fewer while other processes keep them busy"  # a CPU run of one process follows the CPUs' load
    threads, how, follows = choose_in_a_process(every, "auto", 1, 0, True)  # DALI idle (the digit sets)
    assert (threads, how, follows) == (len(every), f"{len(every)} CPUs usable by this process{shared}", True)
    # DALI decodes JPEGs on one thread
    assert choose_in_a_process(every, "auto", 1, 1, True) == \
        [len(every) - 1, f"{len(every)} CPUs usable by this process, less DALI's 1 decoding" + shared * (
            len(every) > 2), len(every) > 2]
    # pinned to one CPU: never fewer than one, and nothing to give up
    assert choose_in_a_process({0}, "auto", 1, 1, True) == [1, "1 CPUs usable by this process, less DALI's 1 "
                                                               "decoding", False]
    # unpinned, the node's processes divide the machine (Lightning's rule for DDP), and do not follow the load: the
    # launcher's ranks are its children, the others' company
    threads, how, follows = choose_in_a_process(every, "auto", len(every), 0, True)
    assert threads == 1 and f"shared by {len(every)} processes" in how and not follows
    # a GPU run keeps its count
    assert choose_in_a_process(every, "auto", 1, 0, False) == [len(every), f"{len(every)} CPUs usable by this "
                                                                           f"process", False]


def test_a_given_number_and_the_users_omp_num_threads_win_and_do_not_follow_the_load():
    assert choose_in_a_process(set(range(os.cpu_count())), 3, 1, 1, True) == [3, "cpu_threads=3", False]
    assert choose_in_a_process(set(range(os.cpu_count())), "auto", 1, 0, True, env={"OMP_NUM_THREADS": "2"}) == \
        [2, "OMP_NUM_THREADS from the environment", False]
    # one the trainer set for its own processes is chosen again
    assert choose_in_a_process({0}, "auto", 1, 0, True, env={"OMP_NUM_THREADS": "2", cpu_threads.CHOSEN_HERE: "1"}) \
        == [1, "1 CPUs usable by this process", False]


def test_the_beside_benchmark_times_one_process_alone_and_two_at_once(tmp_path, digits_cache):
    result = run_cli("trainer.bench", "--beside", "2", "--warmup", "2", "--steps", "5", "--repeats", "1",
                     "data.batch_size=4", cwd=tmp_path, env={"CONVNET_CACHE": str(digits_cache)}, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["beside"] == 2 and figures["alone_img_s"] > 0 and figures["beside_img_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["beside_img_s"] / figures["alone_img_s"], abs=0.001)
    if given := os.environ.get("OMP_NUM_THREADS"):  # the suite's workers give their runs theirs (tests/conftest.py)
        assert figures["cpu_threads"] == int(given) and figures["cpu_threads_beside"] == [int(given)] * 2
    else:  # two at once see each other's CPU: one thread each
        assert figures["cpu_threads_beside"] == [1, 1] and 1 <= figures["cpu_threads"] <= os.cpu_count()
    assert lines[-4].split() == ["processes", "img/s", "each", "of", "alone", "threads"]
    assert lines[-2].split()[0] == "2" and float(lines[-2].split()[2]) == pytest.approx(figures["ratio"], abs=0.01)
    assert lines[-2].split()[3:] == [f"{figures['cpu_threads_beside'][0]},", str(figures["cpu_threads_beside"][1])]
    assert [p.name for p in tmp_path.iterdir()] == ["home"], "the benchmark leaves nothing where it runs"
    refused = run_cli("trainer.bench", "--beside", "1", cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "--beside 1: give the number of processes to run at once, 2 or more" in \
        refused.stderr
