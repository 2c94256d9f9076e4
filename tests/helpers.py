"""What the tests share besides fixtures: the composed config, running a command as a user would, reading a W&B
run back, the libraries' console lines. Imported as ``from helpers import ...`` (tests/ is on the path: pytest's
rootdir conftest), not from conftest.py, of which pytest keeps only the last one loaded under that name."""

import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"


def make_cfg(tmp_path: Path, cache: Path, *overrides: str) -> DictConfig:
    """The config ``python -m trainer`` would compose, on the CPU with the session's digits cache."""
    base = [f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={cache}", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=[*base, *overrides])


def ctrl_c_at(step: int):
    """A callback that presses Ctrl-C (a real SIGINT to this process) after ``step`` optimizer steps."""
    import pytorch_lightning as pl

    class CtrlC(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == step:
                os.kill(os.getpid(), signal.SIGINT)

    return CtrlC()


@contextmanager
def callback_in_runs(callback):
    """Inside the block, every Trainer ``trainer.train`` builds also has ``callback`` (a test's probe, or a signal
    at a chosen moment): the run's own callbacks are left as they are."""
    import trainer.train as train_module

    real = train_module.build_trainer

    def build_trainer(*args, **kwargs):
        built = real(*args, **kwargs)
        built.callbacks.append(callback)
        return built

    train_module.build_trainer = build_trainer
    try:
        yield
    finally:
        train_module.build_trainer = real


def run_cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Runs ``python -m module args`` as a user would, returning the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


# The libraries' lines that belong in run.log, not on a command's console (trainer/run/console.py)
LIBRARY_LINES = ("GPU available:", "TPU available:", "litlogger", "LeafSpec", "The `srun` command is available",
                 "Seed set to", "Restoring states", "`Trainer.fit` stopped", "wandb:", "You can sync this run",
                 "The anonymous setting has no effect")
BAR_FRAME = re.compile(r"^(Epoch \d+/\d+|Validation|Sanity Checking)\b.*[━╸]")  # Lightning's Rich progress bar


def library_lines(console: str) -> list[str]:
    """The lines of ``console`` that carry one of ``LIBRARY_LINES``, or a progress bar's frame."""
    return [line for line in console.splitlines()
            if any(noise in line for noise in LIBRARY_LINES) or BAR_FRAME.match(line)]


def wandb_inspect(run_dir: Path) -> dict:
    """Reads an offline W&B run back with the W&B CLI (``wandb leet inspect --summary --json``)."""
    import json

    from trainer.results.tracking import wandb_inspect as inspect

    return json.loads(inspect(Path(run_dir), "--summary", "--json"))


def free_port() -> int:
    """A TCP port nothing listens on now (for a rendezvous between test processes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
