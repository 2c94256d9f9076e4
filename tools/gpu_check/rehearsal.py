"""``python -m tools.gpu_check.rehearsal``: the GPU machine's command sequence, tried here first.

Makes (once) a virtualenv on the target's Python holding only the target's own packages that the project
uses (torch 2.11 / torchvision 0.26 / Lightning 2.6.6 / torchmetrics 1.9 where they install here, else
``--torch`` names the stand-in), copies the working tree into a folder as a remote command does, and runs
the commands of docs/speed.md ("Measuring on a GPU machine") in order, each in a network namespace of its own
(``unshare --net``: no network at all) with ``PIP_NO_INDEX=1``: command N finds the kit parts that command N
carries (the earlier ones stay, as on a warm machine) and runs
``python3 -m tools.gpu_check --kit gpu-kit --stage N --rehearse``, the CPU-runnable parts at tiny sizes. Then a
stage is killed in mid-step to see that its JSON is still whole.

It checks and prints: every part at most ``--part-mib``, every command's carry with the working tree within
a command's 64 MiB, the install's time, that Hydra, omegaconf, antlr4, W&B and DALI import from the
kit and torch from the machine, and what each stage ran. The last line is JSON.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainer import PROJECT

MIB = 2**20
COMMAND_LIMIT_MIB = 64  # what one device command carries in all, the working tree included
# The target's own packages that the project (and its tests) import: the rehearsal venv holds these only
TARGET_SET = ["torch=={torch}", "torchvision=={torchvision}", "pytorch-lightning==2.6.6", "torchmetrics==1.9.0",
              "numpy", "pillow", "scikit-learn", "rich", "matplotlib", "pytest", "packaging", "pyyaml", "requests",
              "click", "typing-extensions", "protobuf", "psutil", "six", "wheel", "cloudpickle", "anyio", "httpx",
              "xxhash", "onnx", "onnxruntime", "onnxscript"]
KIT_MODULES = ("hydra", "omegaconf", "antlr4", "wandb", "nvidia.dali")


def make_venv(venv: Path, python: str, torch: str, torchvision: str) -> Path:
    """The target-like environment (made once; online); returns its python3."""
    py = venv / "bin" / "python3"
    if not (venv / ".ready").is_file():
        if subprocess.run([python, "-c", ""], capture_output=True).returncode != 0:  # absent, or a pyenv shim
            sys.exit(f"error: {python} does not run here; give the target's Python with --python PATH "
                     f"(e.g. ~/.pyenv/versions/3.12.1/bin/python3.12)")
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        packages = [p.format(torch=torch, torchvision=torchvision) for p in TARGET_SET]
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
        (venv / ".ready").touch()
    return py


def copy_tree(dest: Path) -> float:
    """The working tree as a remote command sends it (tracked and untracked-not-ignored files); its MiB."""
    files = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, files):
        src = PROJECT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
            total += src.stat().st_size
    return total / MIB


def offline(command: list[str]) -> list[str]:
    """``command`` with no network at all where this machine allows a network namespace (root), else as is."""
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--net", *command]
    return command


def run_command(folder: Path, py: Path, stage: str, out: Path, timeout: float | None = None,
                kill_after_first_step: bool = False) -> tuple[int, float, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k not in ("PYTHONPATH",)}
    env.update(PIP_NO_INDEX="1", PATH=f"{py.parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(folder / "home"))
    (folder / "home").mkdir(exist_ok=True)
    command = offline([str(py), "-m", "tools.gpu_check", "--kit", "gpu-kit", "--stage", stage, "--level", "quick",
                       "--rehearse", "--out", str(out)])
    t0 = time.monotonic()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        print(f"    | {line}", end="", flush=True)
        if kill_after_first_step and "]" in line and line.rstrip().endswith("s)") and ": " in line:
            os.killpg(process.pid, signal.SIGKILL)  # the first step has been recorded: kill mid-way
            break
    process.wait(timeout=timeout)
    return process.returncode, time.monotonic() - t0, "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check.rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, default=PROJECT / "gpu-kit", help="a kit built by make gpu-kit")
    parser.add_argument("--python", default="python3.12", help="the target's Python here (default python3.12)")
    parser.add_argument("--torch", default="2.11.0",
                        help="torch for the target-like venv (2.11.0: the GPU machines' image's)")
    parser.add_argument("--torchvision", default="0.26.0")
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "convnet-classics" / "gpu-rehearsal-venv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/convnet-gpu-rehearsal"))
    args = parser.parse_args(argv)
    manifest = json.loads((args.kit / "manifest.json").read_text())
    print(f"target-like venv: {args.venv} ({args.python}, torch {args.torch})", flush=True)
    py = make_venv(args.venv, args.python, args.torch, args.torchvision)
    if args.work.exists():
        shutil.rmtree(args.work)
    folder = args.work / "repo"
    folder.mkdir(parents=True)
    tree_mib = copy_tree(folder)
    sizes = {a["file"]: a["bytes"] for a in manifest["archives"]}
    limit = manifest["part_limit_bytes"]
    findings = {"tree_mib": round(tree_mib, 2), "parts_mib": {f: round(b / MIB, 2) for f, b in sizes.items()},
                "parts_within_limit": all(b <= limit for b in sizes.values()), "commands": []}
    (folder / "gpu-kit").mkdir()
    for n, carried in enumerate(manifest["commands"], start=1):
        for path in carried:
            shutil.copy2(PROJECT / path, folder / path)
        carry_mib = tree_mib + sum(sizes.get(Path(p).name, 0) for p in carried) / MIB
        out = args.work / f"out-{n}"
        print(f"command {n}: carries {', '.join(carried)} ({carry_mib:.1f} MiB with the tree)", flush=True)
        code, seconds, text = run_command(folder, py, str(n), out)
        report = json.loads((out / "gpu_check.json").read_text())
        kit = report["steps"].get("kit", {})
        imports = {i["module"]: i.get("from", i.get("error")) for i in kit.get("imports", [])}
        findings["commands"].append({
            "command": n, "carry_mib": round(carry_mib, 1), "within_64_mib": carry_mib <= COMMAND_LIMIT_MIB,
            "exit_code": code, "seconds": round(seconds), "kit_seconds": kit.get("seconds"),
            "groups": kit.get("groups"), "steps": {k: v.get("status") for k, v in report["steps"].items()
                                                   if k in [*report["commands"][-1]["steps"]]},
            "from_kit": sorted(m for m in KIT_MODULES if str(args.kit.name) in str(imports.get(m, "")) or
                               "/gpu-kit/" in str(imports.get(m, ""))),
            "torch_from": imports.get("torch")})
        print(f"command {n}: exit {code} in {seconds:.0f} s", flush=True)
    print("a stage killed after its first step:", flush=True)
    code, _, _ = run_command(folder, py, "3", args.work / "out-killed", kill_after_first_step=True)
    killed = json.loads((args.work / "out-killed" / "gpu_check.json").read_text())  # must parse
    findings["killed_stage_json_valid"] = bool(killed["steps"])
    findings["killed_stage_steps"] = list(killed["commands"][-1]["steps"])
    print(json.dumps(findings))
    ok = findings["parts_within_limit"] and all(c["within_64_mib"] and c["exit_code"] == 0
                                                for c in findings["commands"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
