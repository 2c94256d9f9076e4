"""``python -m trainer.bench --beside N``: the same short training as one process alone and as N processes at
once on this machine, each one's images/s and the ratio to alone.

What it measures is what two runs on one workstation, a sweep's points side by side or the test suite's
workers meet: processes that share CPUs nobody divided between them. Every process is a separate
``python -m trainer.bench`` that trains through the real data path (DALI, ``--real-data``) with the
trainer's own thread choice (``cpu_threads``). The processes of one measurement start timing together
(after their warm-up steps, at a rendezvous in a temporary folder) and keep training until the last one
has timed its steps, so every timed step runs beside the others.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Rendezvous:
    """Processes of one measurement meeting in a folder: each leaves a file per point it reaches."""

    def __init__(self, folder: str, processes: int) -> None:
        self.folder, self.processes = Path(folder), processes

    def reached(self, point: str) -> int:
        (self.folder / f"{point}-{os.getpid()}").touch()
        return self.count(point)

    def count(self, point: str) -> int:
        return len(list(self.folder.glob(f"{point}-*")))

    def wait_all(self, point: str, timeout_s: float = 600) -> None:
        self.reached(point)
        deadline = time.monotonic() + timeout_s
        while self.count(point) < self.processes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count(point)} of {self.processes} processes reached {point!r}")
            time.sleep(0.005)


def from_environment() -> Rendezvous | None:
    """The rendezvous a ``--beside`` measurement gave this process (``CONVNET_BENCH_RENDEZVOUS=folder:N``)."""
    given = os.environ.get("CONVNET_BENCH_RENDEZVOUS")
    if not given:
        return None
    folder, processes = given.rsplit(":", 1)
    return Rendezvous(folder, int(processes))


def one_measurement(processes: int, overrides: list[str], warmup: int, steps: int) -> list[dict]:
    """``processes`` trainings at once; each one's JSON result."""
    with tempfile.TemporaryDirectory(prefix="bench-beside-") as folder:
        env = {**os.environ, "CONVNET_BENCH_RENDEZVOUS": f"{folder}:{processes}"}
        command = [sys.executable, "-m", "trainer.bench", "--trainer-only", "--real-data", "--warmup", str(warmup),
                   "--steps", str(steps), "--repeats", "1", "trainer.enable_progress_bar=false", *overrides]
        started = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(processes)]
        results = []
        for process in started:
            out, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a benchmark process failed (exit {process.returncode}):\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results


def bench_beside(beside: int, overrides: list[str], warmup: int, steps: int, repeats: int) -> dict:
    """Alone and ``beside`` at once, ``repeats`` times in turn (so the machine's drift hits both alike); prints a
    line per measurement and the table, returns the figures (medians; torch's threads: the count most timed steps
    ran with, alone and in each process at once, of the last repeat)."""
    alone, together, threads, threads_beside = [], [], None, []
    for repeat in range(repeats):
        first = one_measurement(1, overrides, warmup, steps)[0]
        alone.append(first["trainer_img_s"])
        threads = first.get("cpu_threads")
        results = one_measurement(beside, overrides, warmup, steps)
        each, threads_beside = [r["trainer_img_s"] for r in results], [r.get("cpu_threads") for r in results]
        together.append(statistics.median(each))
        print(f"repeat {repeat + 1}: alone {alone[-1]:8.1f} img/s ({threads} threads); {beside} at once "
              f"{', '.join(f'{r:.1f}' for r in each)} img/s ({', '.join(map(str, threads_beside))} threads)",
              flush=True)
    alone_img_s, beside_img_s = statistics.median(alone), statistics.median(together)
    figures = {"beside": beside, "alone_img_s": round(alone_img_s, 1), "beside_img_s": round(beside_img_s, 1),
               "ratio": round(beside_img_s / alone_img_s, 3), "cpu_threads": threads,
               "cpu_threads_beside": threads_beside, "cpus": os.cpu_count(), "steps": steps, "repeats": repeats}
    print(f"{'processes':>9}  {'img/s each':>10}  {'of alone':>8}  threads")
    print(f"{1:>9}  {alone_img_s:>10.1f}  {1.0:>8.2f}  {threads}")
    print(f"{beside:>9}  {beside_img_s:>10.1f}  {figures['ratio']:>8.2f}  {', '.join(map(str, threads_beside))}")
    return figures
