"""``python3 -m tools.gpu_check``: every check that needs a GPU, in stages that fit a short session on the machine.

Runs on the GPU machine's own Python, offline: with ``--kit gpu-kit`` (``make gpu-kit``, carried in
parts) it first installs what of the kit has arrived (``install.py``), then runs the stage's steps
(``steps.py``), each a process of its own. After every step the figures go into ``OUT/gpu_check.json`` and
``OUT/summary.md``, and each step's output streams into ``OUT/gpu_check.log``, so a command killed at its
limit leaves what it did; the results of the session's earlier commands are carried in
``gpu-check/state.json``.

- stage 1 (torch only, the kit's small part): the GPU tests that need no DALI, including no host sync
  under ``torch.cuda.set_sync_debug_mode("error")`` on in-memory batches; ResNet-50 at batch 256 on the fast
  path (bf16 where native, channels_last, fused SGD, cuDNN autotuning): img/s, MFU, peak memory;
- stage 2 (torch only): AlexNet's grouped network; the peak memory against what ``python -m models NAME``
  counts; ResNet-50 under ``torch.compile``;
- stage 3 (DALI, once all its parts have arrived): DALI ``mixed`` against ``cpu`` on the same JPEGs; the GPU
  tests that need DALI (no host sync with the real DALI loader, the main job's fast path); the full path with
  GPU decoding against stage 1's in-memory figure; AlexNet's full path on the originals and the 256x256
  copy; the main job end to end; with 2+ GPUs the split against DDP (on one GPU: skipped, with the reason).

Exit status: 0 every step that ran passed; 1 a test or a check failed; 2 the kit is incomplete or wrong
(a part that does not match the manifest); 3 no CUDA GPU here, so nothing was measured (``--rehearse``
runs the CPU-runnable parts at tiny sizes instead, to try the commands and the kit).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from trainer import PROJECT

from .install import KitInstallError, describe_versions, install, versions
from .report import Report
from .steps import LEVELS, STEPS, Context, StepTimeout

EXIT_FAILED, EXIT_KIT, EXIT_NO_GPU = 1, 2, 3
FAILED = ("failed", "error", "timed out")


def machine() -> dict:
    import torch

    from trainer.parallel.devices import driver_version

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    driver = driver_version()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = platform.node()
    return {"gpus": gpus, "gpu": torch.cuda.get_device_name(0) if gpus else None, "driver": driver,
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "cpus": os.cpu_count(), "host": platform.node(), "boot": boot, "date": time.strftime("%Y-%m-%d %H:%M")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["1", "2", "3", "all"], default="all", help="which steps (default all)")
    parser.add_argument("--level", choices=list(LEVELS), default="full", help="quick | short | full (default)")
    parser.add_argument("--kit", type=Path, default=None, help="install from this kit first (make gpu-kit)")
    parser.add_argument("--out", type=Path, default=PROJECT / "gpu-check", help="where the JSON, summary and log go")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the seconds this command may take: steps that would not fit are skipped, said why")
    parser.add_argument("--rehearse", action="store_true",
                        help="without a GPU: run the CPU-runnable parts at tiny sizes (the commands and the kit)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    info = machine()
    report = Report(args.out, PROJECT / "gpu-check" / "state.json", info, args.level)
    print(f"[{time.strftime('%H:%M:%S')}] {info['gpus']} x {info['gpu'] or 'no CUDA GPU'}, torch {info['torch']}, "
          f"Python {info['python']}; stage {args.stage}, level {args.level}; writing {args.out}", flush=True)
    env = {}
    if args.kit is not None:
        try:
            installed = install(args.kit)
        except KitInstallError as e:
            report.record("kit", {"status": "error", "error": str(e)})
            print(f"error: {e}", file=sys.stderr)
            return EXIT_KIT
        env = installed.pop("env")
        installed["imports"] = versions(env)
        report.record("kit", {"status": "installed", **installed, "seconds": round(time.monotonic() - start, 1)})
        print("\n".join([f"kit: {installed['groups']}", *describe_versions(installed["imports"], args.kit),
                         *[f"  needs {n['name']} {n['needs']}: machine {n['machine']} -> "
                           f"{n.get('used', 'ok' if n['ok'] else 'unmet')}" for n in installed["needs"]]]), flush=True)
    if not info["gpus"] and not args.rehearse:
        report.record("no-gpu", {"status": "not run", "why": "no CUDA GPU here: nothing was measured; run this on a "
                                                            "GPU machine (or --rehearse to try the commands)"})
        print("no CUDA GPU here: nothing ran (exit status 3). Run it on a GPU machine; --rehearse tries the "
              "commands on the CPU at tiny sizes.", file=sys.stderr)
        return EXIT_NO_GPU
    have_dali = args.kit is None or report.data["steps"].get("kit", {}).get("groups", {}).get("dali") == "installed"
    deadline = start + args.budget_s if args.budget_s else float("inf")
    ctx = Context(env=env, level=LEVELS[args.level], report=report, deadline=deadline, gpus=info["gpus"],
                  rehearse=args.rehearse and not info["gpus"])
    for name, (stage, step, needs) in STEPS.items():
        if args.stage != "all" and int(args.stage) != stage:
            continue
        if "dali" in needs and not have_dali:
            report.record(name, {"status": "skipped", "why": "DALI's parts have not all arrived (stage 3)"})
            continue
        if ctx.left() < 30:
            report.record(name, {"status": "skipped", "why": f"not enough of this command's {args.budget_s:.0f} s "
                                                              f"left"})
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name}...", flush=True)
        t0 = time.monotonic()
        try:
            result = step(ctx)
        except StepTimeout as e:
            result = {"status": "timed out", "error": str(e)}
        except Exception as e:  # a step that cannot run is a finding, not the end of the check
            result = {"status": "error", "error": f"{type(e).__name__}: {e}"[:1000]}
        result["seconds"] = round(time.monotonic() - t0, 1)
        report.record(name, result)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {result['status']} ({result['seconds']} s)", flush=True)
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'summary.md'}, {report.log()} "
          f"({time.monotonic() - start:.0f} s)")
    failed = [n for n, r in report.data["steps"].items() if r.get("status") in FAILED]
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
