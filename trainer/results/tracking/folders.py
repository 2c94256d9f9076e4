"""A W&B run's folders on disk: their names (one per start of a resumed offline run), reading one back with the
W&B CLI (``wandb leet inspect``), and W&B's links to the newest one."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path


def wandb_cli() -> str:
    """The ``wandb`` command of this environment."""
    return shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))


def wandb_inspect(part: Path, *flags: str) -> str:
    """``wandb leet inspect FLAGS PART``: one W&B run folder read back by the W&B CLI."""
    return subprocess.run([wandb_cli(), "leet", "inspect", *flags, str(part)], capture_output=True, text=True,
                          check=True, timeout=300).stdout


def validation_history(part: Path) -> list[dict]:
    """The history records of one W&B run folder that hold a validation result (``val/top1_err``)."""
    history = []
    for line in wandb_inspect(part, "--json").splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        item = record.get("history", {}).get("item", {}) if record.get("type") == "history" else {}
        if "val/top1_err" in item:
            history.append(item)
    return history


# A W&B run's folder: <mode>-run-<time>-<id>, with -<n> after it when two starts of one run fell in the same second
PART_NAME = re.compile(r"(?:offline-)?run-(\d{8}_\d{6})-([a-z0-9]+)(?:-(\d+))?")


def run_id_of(part: str | Path) -> str | None:
    """The run id in a W&B folder's name (``offline-run-20261207_083826-0eb39z65-1``: ``0eb39z65``), or None."""
    found = PART_NAME.fullmatch(Path(part).name)
    return found.group(2) if found else None


def run_parts(wandb_dir: Path, run_id: str) -> list[Path]:
    """The folders of W&B run ``run_id`` under ``wandb_dir``, oldest first: one per start of a resumed offline run
    (``PART_NAME``)."""
    found = [(m, p) for p in wandb_dir.glob(f"*run-*-{run_id}*")
             if (m := PART_NAME.fullmatch(p.name)) and m.group(2) == run_id]
    return [p for m, p in sorted(found, key=lambda f: (f[0].group(1), int(f[0].group(3) or 0)))]


def validations_logged(wandb_dir: Path, run_id: str, current: Path | None = None) -> set[int]:
    """The global steps of the validation results the W&B folders of ``run_id`` under ``wandb_dir`` hold (all
    its parts: a resumed run has one per start), leaving out ``current`` (the part this process writes).
    A part that cannot be read (a ``kill -9`` may leave only its header) holds none."""
    steps = set()
    for part in run_parts(wandb_dir, run_id):
        if current is not None and part.resolve() == current.resolve():
            continue
        try:
            steps |= {int(h["trainer/global_step"]) for h in validation_history(part) if "trainer/global_step" in h}
        except (subprocess.SubprocessError, ValueError, KeyError):
            continue
    return steps


def point_links_back(removed: Path) -> None:
    """W&B's links to the newest part of a run (``wandb/latest-run``, ``debug.log``, ``debug-internal.log``)
    pointed at the part ``removed`` (a start stopped during set-up): they point at the newest part left, as they
    did before that start."""
    parts = run_parts(removed.parent, run_id_of(removed) or "")  # the run's parts left, oldest first
    for link in ("latest-run", "debug.log", "debug-internal.log"):
        path = removed.parent / link
        if not path.is_symlink() or not str(path.readlink()).startswith(removed.name):
            continue
        path.unlink()
        if parts:
            path.symlink_to(parts[-1].name if link == "latest-run" else f"{parts[-1].name}/logs/{link}")
