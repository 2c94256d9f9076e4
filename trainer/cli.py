"""What every command of the trainer shares: choosing the data when none is named, reading the command line,
and a mistake in the user's input answered with its message, no traceback."""

import gc
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from .run import console, interrupt


def pause_collector() -> None:
    """Python's cyclic garbage collector off while a command loads its libraries (torch, torchvision, Lightning,
    DALI, W&B): the imports make millions of objects, none of them garbage, and the collector walked them again and
    again: 0.9 s of a 5 s start (2 cores, Python 3.11; docs/speed.md, "Start-up"). ``resume_collector`` after."""
    gc.disable()


def resume_collector() -> None:
    """The collector on again once the libraries are loaded; what they made is frozen first (``gc.freeze``: never
    scanned again, so the collections during training are shorter)."""
    gc.freeze()
    gc.enable()


def user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message says what happened and what to do (the user's input, a lost peer): the message, no
    traceback. Imported when a run needs them, not for ``--help`` (Lightning and torchvision take seconds)."""
    from data_pipelines import DataConfigError
    from models.weights import WeightsError

    from .config_check import ConfigValueError
    from .parallel.devices import GPUUnusableError
    from .parallel.peers import LostPeerError
    from .parallel.split_strategy import StrategyConfigError
    from .run.callbacks import NonFiniteLossError
    from .run.checkpoints import CheckpointError
    from .run.run_folder import RunFolderError
    from .run.storage import StorageError

    return (DataConfigError, CheckpointError, NonFiniteLossError, StrategyConfigError, GPUUnusableError, WeightsError,
            LostPeerError, ConfigValueError, StorageError, RunFolderError)


def default_data_overrides(overrides: list[str], environ=os.environ, doing: str = "training") -> list[str]:
    """ImageNet when ``IMAGENET_ROOT`` is set and no data set was chosen, else the embedded digits (said once, with
    what the command is ``doing`` on them).

    Hydra's defaults list cannot read the environment, so the choice is made here, on the
    command line, before Hydra composes the config.
    """
    if any(o.split("=", 1)[0].lstrip("+~") == "data" for o in overrides):
        return overrides
    if environ.get("IMAGENET_ROOT"):
        return [*overrides, "data=imagenet"]
    asks_for_help = any(o in ("--help", "-h", "--hydra-help") for o in overrides)
    if console.process_rank(environ) == 0 and not asks_for_help:  # once
        console.say_before_folder(f"IMAGENET_ROOT is not set: {doing} on the embedded digits sample (data=digits)")
    return overrides


# Exit statuses, one rule for every command of the project (data_pipelines' commands follow it too):
#   0  done
#   1  FAILED: the command began its work and it failed (a run folder may exist; the message says what is kept)
#   2  REFUSED: refused before anything was written, for what the command line names (a setting, a data set, a
#      checkpoint, a folder to write into); argparse's own errors are 2 as well
#   130 / 143  stopped by Ctrl-C / SIGTERM, with a checkpoint to resume from (run/interrupt.py)
FAILED, REFUSED = 1, 2


def exit_on_user_error(run, cfg: DictConfig, status: int = FAILED) -> None:
    """Runs ``run(cfg)``; a mistake in the user's input prints its message (which says how to fix it)
    and exits with ``status`` (FAILED once the work has begun, REFUSED for a check before it), without a
    traceback."""
    errors = user_errors()
    try:
        run(cfg)
    except errors as e:
        if not getattr(e, "printed", False):
            print(f"error: {e}", file=sys.stderr)
        if getattr(e, "removed", ""):  # found before the first step (train.py): what the start made is gone
            print(f"nothing was trained{e.removed}", file=sys.stderr)
        sys.exit(status)
    except interrupt.RunInterrupted as e:  # Ctrl-C / SIGTERM: the checkpoint is written, say how to resume
        if console.process_rank() == 0:
            print(e, file=sys.stderr)
        sys.exit(e.exit_status)
    except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C: at once, with the signal's status
        if interrupt.received:
            sys.exit(interrupt.EXIT_STATUS[interrupt.received[-1]])
        raise


def did_you_mean(key: str, value: str, choices, n: int = 1) -> str:
    """``; did you mean key=<nearest>?`` for a value that is not one of ``choices`` (empty when none is near)."""
    import difflib

    near = difflib.get_close_matches(value, list(choices), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(f'{key}={n}' for n in near)}?" if near else ""


def override_syntax_error(overrides: list[str]) -> str | None:
    """The first command-line setting Hydra's grammar cannot read, in one line with the quoting that fixes it, or
    None. Unquoted, a value cannot hold accents or brackets (Hydra's override grammar), and a space ends the argument
    in the shell (``data.root=/data/my images`` arrives as ``data.root=/data/my`` and ``images``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    settings = [o for o in overrides if not o.startswith("-")]
    for before, override in zip([None, *settings], settings):
        try:
            parser.parse_override(override)
            continue
        except Exception:
            pass
        if "=" not in override and before is not None and "=" in before:  # the shell cut a value at a space
            return (f"'{override}' is not a setting (key=value): the shell cut the value of {before} at a space; "
                    f"quote the whole setting: '{before} {override}'")
        if "=" not in override:
            return f"'{override}' is not a setting: give key=value (python -m trainer --help lists them)"
        key, value = override.split("=", 1)
        return (f"{override} cannot be read as a setting: Hydra reads a value with accents, brackets or spaces only "
                f"quoted; quote the value inside the setting, e.g. \"{key}='{value}'\"")
    return None


def override_value(overrides: list[str], key: str) -> str | None:
    """The value ``key=...`` has on the command line, or None."""
    return next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key and "=" in o), None)


def run_folder_of(ckpt: str) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/<folder>/<file>.ckpt`` beside ``<run>/.hydra``), or None."""
    run = Path(ckpt).expanduser().resolve().parent.parent
    return run if (run / ".hydra").is_dir() else None
