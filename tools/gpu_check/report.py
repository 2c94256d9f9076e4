"""What the GPU check has found so far, written after every step: a command killed at its limit leaves it.

Three files in the output folder, which the remote command brings back (at most 8 files): the JSON
(``gpu_check.json``), a short ``summary.md``, and one log (``gpu_check.log``) into which every step's output
streams as it runs. The JSON and the summary are replaced whole (written beside and renamed), so they are
valid at every moment. A state file in the project's ``gpu-check/`` folder carries the results of the
earlier commands of one session (the machine keeps ignored files while it stays warm), so the last command's
files hold them all.
"""

import json
import os
import time
from pathlib import Path

# What the figures should be (docs/speed.md, "Measuring on a GPU machine")
ANCHORS = {
    "resnet50_img_s": "NVIDIA's ConvNets trainer: 2,470 img/s on one A100 (AMP); MLPerf Training v4.0: about "
                      "7,900 img/s per H200 (8x H200, MXNet + DALI). Below 3,000 on an H200 needs a profile",
    "full_path_share": "the DALI path's img/s over the in-memory figure: 0.9 or more",
    "decoders": "mean absolute pixel difference <= 1, max <= 16 (0-255)",
    "memory": "measured peak over the count of `python -m models NAME`: a little above 1 (workspaces, transient "
              "gradients)",
    "split_over_ddp": "the split's step within 10 % of 2-GPU DDP's (ratio <= 1.10)",
}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Report:
    """The check's results, kept on disk as they come."""

    def __init__(self, out: Path, state: Path, machine: dict, level: str) -> None:
        self.out, self.state = out, state
        out.mkdir(parents=True, exist_ok=True)
        state.parent.mkdir(parents=True, exist_ok=True)
        earlier = {}
        if state.is_file():
            try:
                earlier = json.loads(state.read_text())
            except ValueError:
                earlier = {}
        same_machine = earlier.get("machine", {}).get("boot") == machine.get("boot")
        self.data = {"machine": machine, "level": level,
                     "commands": earlier.get("commands", []) if same_machine else [],
                     "steps": earlier.get("steps", {}) if same_machine else {}}
        self.data["commands"].append({"started": time.strftime("%H:%M:%S"), "steps": []})
        self.log_path = out / "gpu_check.log"
        self.save()

    def log(self) -> "os.PathLike":
        return self.log_path

    def figure(self, step: str, key: str):
        return self.data["steps"].get(step, {}).get(key)

    def record(self, step: str, result: dict) -> None:
        self.data["steps"][step] = result
        self.data["commands"][-1]["steps"].append(step)
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=1) + "\n"
        _write(self.out / "gpu_check.json", text)
        _write(self.state, text)
        _write(self.out / "summary.md", summary_markdown(self.data))


def _figures(result: dict) -> str:
    shown = {k: v for k, v in result.items() if k not in ("status", "seconds", "command", "error", "why")}
    return ", ".join(f"{k} {v}" for k, v in shown.items() if not isinstance(v, (dict, list)))[:400]


def summary_markdown(data: dict) -> str:
    m = data["machine"]
    lines = [f"# GPU check, {m.get('date')} ({data.get('level')})", "",
             f"{m.get('gpus')} x {m.get('gpu') or 'no CUDA GPU'}; driver {m.get('driver') or '-'}, torch "
             f"{m.get('torch')} (CUDA {m.get('cuda')}), Python {m.get('python')}", "",
             "| step | status | s | figures |", "|---|---|---:|---|"]
    for name, result in data["steps"].items():
        why = result.get("why") or result.get("error") or ""
        lines.append(f"| {name} | {result.get('status')} | {result.get('seconds', '')} | "
                     f"{(why + '; ' if why else '') + _figures(result)} |")
    lines += ["", "What the figures should be:"] + [f"- {k}: {v}" for k, v in ANCHORS.items()]
    return "\n".join(lines) + "\n"
