"""``make gpu-check`` (``python -m trainer.gpu_check``): every check that needs a GPU, in one command.

Run it on the first GPU machine at hand (under 20 minutes on one GPU). It writes
``OUT/gpu_check.json`` and a short ``OUT/summary.md``, with each step's log beside them:

1. the suite's GPU tests (``pytest -m gpu``): the no-host-sync test under CUDA's sync debug mode with
   the real DALI loader, the GPU decoder against the CPU decoder, the main job on the GPU's fast path
   and, with 2+ GPUs, the two-GPU split against the grouped AlexNet over NCCL with channels_last;
2. DALI ``mixed`` against ``cpu`` on the same generated JPEGs (``data_pipelines.decoders``);
3. ``trainer.bench`` ResNet-50 at batch 256 on the GPU's fast path (bf16 where native): on an
   in-memory batch (the compute), and the full path, DALI decoding generated ImageNet-sized JPEGs on
   the GPU; img/s, MFU, peak memory; and AlexNet's full path on those JPEGs and on their 256x256
   copy (``prepare resize --square``: the GPU decoder's work about 3x smaller);
4. with 2+ GPUs: the two-GPU AlexNet split against 2-GPU DDP at the paper's batch of 128, fp32
   (target: the split's step within 10 % of DDP's).

On a machine without a CUDA GPU it runs step 1 (every GPU test is reported as skipped, with the
reason), says so, and exits 0; a failed test or check exits 1.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]
# What the figures should be (README, "Measuring on a GPU machine")
ANCHORS = {"resnet50_img_s": "NVIDIA's reference trainer: 2,470 img/s ResNet-50 AMP on one A100 80GB; MLPerf's "
                             "H100 results: about 6,900 img/s per GPU with a tuned stack",
           "split_over_ddp": "the split's step within 10 % of 2-GPU DDP's (ratio <= 1.10)"}


def run(name: str, command: list[str], out: Path, timeout: int) -> tuple[int, str]:
    """Runs one step as its own process, its output kept in ``OUT/<name>.log``; (exit status, output)."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)}", flush=True)
    try:
        done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=timeout)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code, text = 124, f"{e.stdout or ''}{e.stderr or ''}\ntimed out after {timeout} s"
    (out / f"{name}.log").write_text(text if isinstance(text, str) else text.decode(errors="replace"))
    return code, text


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def gpu_tests(out: Path, quick: bool) -> dict:
    """``pytest -m gpu``: counts, and the failed and skipped tests with their reasons."""
    xml = out / "gpu-tests.xml"
    code, _ = run("gpu-tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-ra", "-p", "no:cacheprovider",
                                f"--junitxml={xml}"], out, timeout=300 if quick else 900)
    result = {"exit_code": code, "passed": [], "failed": [], "skipped": {}}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}.{case.get('name')}"
            skipped = case.find("skipped")
            if skipped is not None:
                result["skipped"][name] = skipped.get("message", "")
            elif case.find("failure") is not None or case.find("error") is not None:
                result["failed"].append(name)
            else:
                result["passed"].append(name)
    return result


def bench(name: str, overrides: list[str], out: Path, steps: int, repeats: int) -> dict:
    code, text = run(name, [sys.executable, "-m", "trainer.bench", "--steps", str(steps), "--repeats", str(repeats),
                            "trainer.enable_progress_bar=false", *overrides], out, timeout=900)
    figures = last_json(text) if code == 0 else None
    return figures or {"error": f"exit status {code}; see {out / (name + '.log')}"}


def gpu_checks(out: Path, gpus: int, quick: bool) -> dict:
    from data_pipelines.bench import image_files, make_images
    from data_pipelines.decoders import decoder_agreement
    from data_pipelines.prepare.resize import resize_dataset

    steps, repeats = (5, 1) if quick else (100, 3)
    checks = {}
    jpegs = make_images(256 if quick else 8192)
    files, _ = image_files(jpegs)
    try:
        checks["decoders"] = decoder_agreement(files[:256])
    except Exception as e:  # a check that cannot run is a finding, not a crash of the whole command
        checks["decoders"] = {"error": f"{type(e).__name__}: {e}"}
    resnet = ["model=resnet50", "data.batch_size=256"]
    checks["resnet50_synthetic"] = bench("bench-resnet50-synthetic", resnet, out, steps, repeats)
    real = ["--real-data", "data=imagenet", "data.num_classes=8"]
    checks["resnet50_full_path"] = bench("bench-resnet50-dali", [*resnet, *real, f"data.root={jpegs}"], out, steps,
                                         repeats)
    # AlexNet's data path on the originals and on their 256x256 copy (nvJPEG decodes a third of the pixels)
    prepared = jpegs.with_name(jpegs.name + "-256sq")
    resize_dataset(jpegs, prepared, size=256, square=True)
    alexnet = ["model=alexnet", "data.batch_size=256", *real]
    checks["alexnet_dali_originals"] = bench("bench-alexnet-dali", [*alexnet, f"data.root={jpegs}"], out, steps,
                                             repeats)
    checks["alexnet_dali_prepared"] = bench("bench-alexnet-dali-256", [*alexnet, f"data.root={prepared}"], out,
                                            steps, repeats)
    if gpus >= 2:
        common = ["model=alexnet", "trainer.devices=2", "trainer.precision=32-true"]
        split = bench("bench-alexnet-split", [*common, "strategy=two_gpu_split", "data.batch_size=128"], out, steps,
                      repeats)
        ddp = bench("bench-alexnet-ddp", [*common, "strategy=ddp", "data.batch_size=64"], out, steps, repeats)
        checks["alexnet_split"], checks["alexnet_ddp"] = split, ddp
        if "trainer_step_ms" in split and "trainer_step_ms" in ddp:
            ratio = split["trainer_step_ms"] / ddp["trainer_step_ms"]
            checks["split_over_ddp"] = {"ratio": round(ratio, 3), "within_target": ratio <= 1.10}
    return checks


def machine() -> dict:
    from .devices import driver_version

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"gpus": gpus, "gpu": torch.cuda.get_device_name(0) if gpus else None, "driver": driver_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M")}


def summary_markdown(report: dict) -> str:
    m, tests, checks = report["machine"], report["gpu_tests"], report["checks"]
    lines = [f"# GPU check, {m['date']}", "",
             f"{m['gpus']} x {m['gpu'] or 'no CUDA GPU'}; driver {m['driver'] or '-'}, torch {m['torch']} "
             f"(CUDA {m['cuda']})", "",
             f"GPU tests: {len(tests['passed'])} passed, {len(tests['failed'])} failed, {len(tests['skipped'])} skipped"]
    lines += [f"- failed: `{name}`" for name in tests["failed"]]
    lines += [f"- skipped: `{name}`: {why}" for name, why in tests["skipped"].items()]
    if not checks:
        lines += ["", "No CUDA GPU here: the checks below the tests did not run. Run `make gpu-check` on a GPU machine."]
    for name, figures in checks.items():
        lines += ["", f"## {name}", "", "```", json.dumps(figures, indent=1), "```"]
    lines += ["", "What the figures should be:"] + [f"- {k}: {v}" for k, v in ANCHORS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "gpu-check", help="where the JSON, summary and logs go")
    parser.add_argument("--quick", action="store_true", help="a few steps per benchmark (checks the command itself)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {"machine": machine(), "gpu_tests": gpu_tests(args.out, args.quick), "checks": {}}
    if report["machine"]["gpus"]:
        report["checks"] = gpu_checks(args.out, report["machine"]["gpus"], args.quick)
    report["wall_s"] = round(time.perf_counter() - start)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    summary = summary_markdown(report)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'summary.md'} ({report['wall_s']} s)")
    failed = report["gpu_tests"]["failed"] or report["gpu_tests"]["exit_code"] not in (0, 5) or any(
        "error" in c or c.get("within_tolerance") is False or c.get("within_target") is False
        for c in report["checks"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
