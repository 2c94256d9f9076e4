"""The GPU check's steps, by stage: each a process of its own, its output streamed into the log, its figures
recorded as soon as it ends.

Stage 1 and 2 need torch only (they run on the kit's small part, before DALI has arrived); stage 3 needs
DALI. ``--level`` trades precision for minutes (quick: a few steps, to check the command itself; short: what
fits a 15-minute session; full: the figures of docs/speed.md).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trainer import PROJECT

LEVELS = {"quick": {"warmup": 3, "steps": 5, "repeats": 1, "images": 256, "epochs": 2},
          "short": {"warmup": 10, "steps": 30, "repeats": 2, "images": 2048, "epochs": 10},
          "full": {"warmup": 10, "steps": 100, "repeats": 3, "images": 8192, "epochs": 30}}


@dataclass
class Context:
    """What a step runs with: the environment from the kit, the level's sizes, the report, the time left."""
    env: dict[str, str]
    level: dict
    report: object
    deadline: float
    gpus: int
    rehearse: bool = False  # on a CPU, at tiny sizes: the commands and the kit, not the figures
    work: Path = field(default_factory=lambda: PROJECT / "gpu-check" / "work")

    def left(self) -> float:
        return self.deadline - time.monotonic()


class StepTimeout(RuntimeError):
    pass


def run_logged(ctx: Context, name: str, command: list[str], timeout: float, cwd: Path = PROJECT) -> tuple[int, str]:
    """Runs ``command`` with the kit's environment, streaming its output into the log; (exit status, output).
    A step that outruns ``timeout`` is killed with its processes; its output so far stays in the log."""
    timeout = max(1.0, min(timeout, ctx.left()))
    with open(ctx.report.log(), "a", buffering=1) as log:
        log.write(f"\n=== [{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)} (timeout {timeout:.0f} s)\n")
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **ctx.env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        timed_out = []

        def kill():
            timed_out.append(True)
            os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        lines = []
        try:
            for line in process.stdout:
                log.write(line)
                lines.append(line)
        finally:
            timer.cancel()
            process.wait()
        log.write(f"=== {name}: exit status {process.returncode}\n")
    text = "".join(lines)
    if timed_out:
        raise StepTimeout(f"killed after {timeout:.0f} s (its output so far is in the log)")
    return process.returncode, text


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def pytest_step(ctx: Context, marks: str) -> dict:
    """``pytest -m MARKS``: passed, failed, skipped (with the reasons) and modules not collected (needs DALI)."""
    ctx.work.mkdir(parents=True, exist_ok=True)
    xml = ctx.work / f"pytest-{marks.replace(' ', '_')}.xml"
    xml.unlink(missing_ok=True)
    code, _ = run_logged(ctx, f"pytest -m '{marks}'", [sys.executable, "-m", "pytest", "-m", marks, "-q", "-ra",
                                                        "-p", "no:cacheprovider", "--continue-on-collection-errors",
                                                        f"--junitxml={xml}", "tests"], timeout=480)
    result = {"exit_code": code, "passed": [], "failed": [], "skipped": {}, "not_collected": {}}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}.{case.get('name')}"
            skipped, error = case.find("skipped"), case.find("error")
            failure = case.find("failure")
            text = (error.text or error.get("message", "")) if error is not None else ""
            if skipped is not None:
                result["skipped"][name] = skipped.get("message", "")
            elif error is not None and not case.get("classname") and "No module named 'nvidia.dali'" in text:
                result["not_collected"][case.get("name")] = "needs DALI (stage 3)"
            elif failure is not None or error is not None:
                result["failed"].append(name)
            else:
                result["passed"].append(name)
    ok = not result["failed"] and code in (0, 1, 5) and (code != 1 or not result["failed"])
    result["status"] = "passed" if ok and result["passed"] else "failed" if not ok else "nothing ran"
    return result


def bench(ctx: Context, overrides: list[str], real_data: bool = False, steps: int | None = None,
          repeats: int | None = None) -> dict:
    level = ctx.level
    command = [sys.executable, "-m", "trainer.bench", "--warmup", str(level["warmup"]), "--steps",
               str(steps or level["steps"]), "--repeats", str(repeats or level["repeats"]),
               "trainer.enable_progress_bar=false", *(["--real-data"] if real_data else []), *overrides]
    code, text = run_logged(ctx, "trainer.bench " + " ".join(overrides), command, timeout=420)
    figures = last_json(text) if code == 0 else None
    return {**figures, "status": "measured"} if figures else {"status": "failed", "error": f"exit status {code}"}


def model(ctx: Context, gpu: list[str], cpu: list[str]) -> list[str]:
    """The overrides of a measurement: ``gpu`` on the GPU, ``cpu`` (tiny) in a rehearsal on a CPU."""
    return [*cpu, "trainer.accelerator=cpu"] if ctx.rehearse else gpu


RESNET50 = ["model=resnet50", "data.batch_size=256"]


def step_gpu_tests_torch(ctx):
    return pytest_step(ctx, "gpu and not dali")


def step_resnet50(ctx):
    return bench(ctx, model(ctx, RESNET50, ["model=resnet18", "data.batch_size=8"]))


def step_alexnet_grouped(ctx):
    return bench(ctx, model(ctx, ["model=alexnet", "data.batch_size=128"], ["model=alexnet", "data.batch_size=8"]))


def step_resnet50_compile(ctx):
    if ctx.rehearse:
        return {"status": "skipped", "why": "compiling takes minutes on a CPU; on the GPU: model.compile=true"}
    figures = bench(ctx, [*RESNET50, "model.compile=true"], repeats=1)
    eager = ctx.report.figure("resnet50", "trainer_img_s")
    if eager and figures.get("trainer_img_s"):
        figures["compiled_over_eager"] = round(figures["trainer_img_s"] / eager, 3)
    return figures


def step_memory(ctx):
    if ctx.rehearse:
        return {"status": "skipped", "why": "GPU memory: needs a GPU"}
    found = {}
    for name, batch in (("alexnet", 128), ("resnet50", 64)):
        code, text = run_logged(ctx, f"memory {name}", [sys.executable, "-m", "tools.gpu_check.probes", "memory",
                                                        name, str(batch)], timeout=240)
        found[name] = last_json(text) if code == 0 else {"error": f"exit status {code}"}
    return {"status": "measured" if all("error" not in v for v in found.values()) else "failed", **{
        f"{n}_b{v.get('batch_size')}": v for n, v in found.items()}}


def step_decoders(ctx):
    if ctx.rehearse:
        code, text = run_logged(ctx, "DALI cpu decoding", [sys.executable, "-m", "data_pipelines.bench", "--images",
                                                           "64", "--pass-images", "256", "--runs", "1", "--variants",
                                                           "decode_only"], timeout=300)
        return {"status": "ran on the CPU" if code == 0 else "failed", "exit_code": code}
    code, text = run_logged(ctx, "decoders", [sys.executable, "-m", "tools.gpu_check.probes", "decoders", "256"],
                            timeout=300)
    figures = last_json(text) if code == 0 else None
    if not figures:
        return {"status": "failed", "error": f"exit status {code}"}
    return {**figures, "status": "passed" if figures.get("within_tolerance") else "failed"}


def step_gpu_tests_dali(ctx):
    return pytest_step(ctx, "gpu and dali")


def _jpegs(ctx) -> dict:
    """The generated JPEGs and their 256x256 copy (made once per machine; a process of its own)."""
    count = 64 if ctx.rehearse else ctx.level["images"]
    code, text = run_logged(ctx, "jpegs", [sys.executable, "-m", "tools.gpu_check.probes", "jpegs", str(count)],
                            timeout=300)
    folders = last_json(text) if code == 0 else None
    if not folders:
        raise RuntimeError(f"generating the JPEGs failed (exit status {code}; see the log)")
    return folders


def step_resnet50_full_path(ctx):
    real = ["data=imagenet", "data.num_classes=8", f"data.root={_jpegs(ctx)['originals']}"]
    figures = bench(ctx, [*model(ctx, RESNET50, ["model=resnet18", "data.batch_size=8"]), *real], real_data=True)
    synthetic = ctx.report.figure("resnet50", "trainer_img_s")
    if synthetic and figures.get("trainer_img_s"):
        figures["full_path_share"] = round(figures["trainer_img_s"] / synthetic, 3)
    return figures


def step_alexnet_dali(ctx):
    folders = _jpegs(ctx)
    sizes = model(ctx, ["model=alexnet", "data.batch_size=256"], ["model=alexnet", "data.batch_size=8"])
    result = {}
    for label, root in folders.items():
        figures = bench(ctx, [*sizes, "data=imagenet", "data.num_classes=8", f"data.root={root}"], real_data=True)
        result[label] = {k: figures.get(k) for k in ("trainer_img_s", "status", "error") if k in figures}
    ok = all(v.get("status") == "measured" for v in result.values())
    if ok and result["originals"].get("trainer_img_s"):
        result["prepared_over_originals"] = round(result["prepared_256"]["trainer_img_s"] /
                                                  result["originals"]["trainer_img_s"], 3)
    return {"status": "measured" if ok else "failed", **result}


def step_main_job(ctx):
    epochs = 1 if ctx.rehearse else ctx.level["epochs"]
    accelerator = "cpu" if ctx.rehearse else "gpu"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "trainer", f"trainer.max_epochs={epochs}",
                   f"trainer.accelerator={accelerator}", "trainer.enable_progress_bar=false"]
        code, text = run_logged(ctx, "python -m trainer", command, timeout=420,
                                cwd=Path(folder))
    figures = {"exit_code": code, "epochs": epochs}
    for line in text.splitlines():
        for key, label in (("final_top1_err", "val top-1 error (final)"), ("wall_time", "wall time"),
                           ("runs_on", "runs on:"), ("data", "data:")):
            if label in line:
                figures[key] = line.split("│")[2].strip() if "│" in line else line.split(":", 1)[1].strip()
    figures["status"] = "passed" if code == 0 else "failed"
    return figures


def step_two_gpus(ctx):
    if ctx.gpus < 2:
        return {"status": "skipped", "why": f"needs 2 CUDA GPUs, this machine has {ctx.gpus}"}
    common = ["model=alexnet", "trainer.devices=2", "trainer.precision=32-true"]
    split = bench(ctx, [*common, "strategy=two_gpu_split", "data.batch_size=128"])
    ddp = bench(ctx, [*common, "strategy=ddp", "data.batch_size=64"])
    result = {"status": "measured", "split": split, "ddp": ddp}
    if "trainer_step_ms" in split and "trainer_step_ms" in ddp:
        ratio = split["trainer_step_ms"] / ddp["trainer_step_ms"]
        result.update(split_over_ddp=round(ratio, 3), within_target=ratio <= 1.10)
    return result


# name -> (stage, function, what it needs: "cuda" and/or "dali"), in the order they run: within a stage the
# figures the session exists for first, so that a command cut short has them
STEPS: dict[str, tuple[int, Callable, set]] = {
    "gpu-tests-torch": (1, step_gpu_tests_torch, set()),
    "resnet50": (1, step_resnet50, {"cuda"}),
    "memory-vs-count": (2, step_memory, {"cuda"}),
    "alexnet-grouped": (2, step_alexnet_grouped, {"cuda"}),
    "resnet50-compile": (2, step_resnet50_compile, {"cuda"}),
    "decoders": (3, step_decoders, {"cuda", "dali"}),
    "resnet50-full-path": (3, step_resnet50_full_path, {"cuda", "dali"}),
    "gpu-tests-dali": (3, step_gpu_tests_dali, {"dali"}),
    "main-job": (3, step_main_job, {"cuda", "dali"}),
    "alexnet-dali": (3, step_alexnet_dali, {"cuda", "dali"}),
    "two-gpus": (3, step_two_gpus, {"cuda"}),
}
