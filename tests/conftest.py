"""Shared fixtures: composed configs with tiny CPU settings, an isolated HOME and a cached digits folder."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu(n)``: skipped, with the reason, where fewer than n CUDA GPUs can be used."""
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in items:
        marker = item.get_closest_marker("gpu")
        needed = (marker.args[0] if marker and marker.args else 1) if marker else 0
        if needed > have:
            item.add_marker(pytest.mark.skip(reason=f"needs {needed} CUDA GPU(s), this machine has {have}: "
                                                    f"run `make gpu-check` on a GPU machine"))


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory) -> Path:
    """One digits folder for the whole session (written once, as a user's cache would be)."""
    from data_pipelines import write_digits

    cache = tmp_path_factory.mktemp("cache")
    write_digits(cache / "digits")
    return cache


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No W&B login, no ImageNet: the state of a fresh machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "IMAGENET_ROOT", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


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


def run_cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Runs ``python -m module args`` as a user would, returning the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


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
