"""What the console shows, and its copy in the run folder (``console.log``).

The console is this tool's: one opening block (what runs where, on what data, with which recipe), the
progress, a line per epoch and the closing summary. The libraries' own log lines (Lightning's "GPU
available", "Seed set to", "`Trainer.fit` stopped") go to the run folder's ``run.log`` only, with their
time and source (``conf/hydra/job_logging/console.yaml``: ``OnTheConsole`` lets through this project's
records and every warning), W&B's banner and closing block are silenced (``WANDB_SILENT``; the summary says
where the W&B run is), and Lightning's model summary is replaced by the opening block's model line.

Seven messages of the pinned libraries are not worth a user's attention, and are filtered here at their
source, each by its exact text or setting, so every other warning shows.

- Lightning's "The `srun` command is available on your system but is not used": printed on any machine
  with Slurm's client installed (a login node, a workstation), for every run that is not a Slurm step.
  Runs under Slurm are launched by `srun` in `slurm/*.sh` and the sweep launcher; a plain run is meant.
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated": Lightning 2.6's own pytree
  helper uses the old class (pytorch_lightning/utilities/_pytree.py); nothing a user can change.
- Lightning's "Tip: ... try installing litlogger": an advertisement, logged at every Trainer start.
- W&B's "The anonymous setting has no effect": Lightning's WandbLogger passes ``anonymous=None``,
  which W&B 0.31 counts as set; the setting is dropped before ``wandb.init`` (``results/tracking.wandb_logger``).
- Lightning's "Checkpoint directory ... exists and is not empty": said on the documented resume path, where
  the folder is the run's own; a new run always has a folder of its own (``trainer/run/run_folder.py``).
- DALI's "`nvidia.dali.fn.experimental.equalize` is now deprecated" (and ``.filter``): its own TrivialAugment
  suite (``nvidia.dali.auto_aug``, ``data.auto_augment=trivial_augment``) calls the old names, at every epoch's
  pipeline; DALI raises it under a filter of its own, so it is dropped on its way to the console.
- Lightning's "You're using the WeightAveraging callback with a model that overrides the configure_model
  callback": said of every run with ``ema.decay``; the module's ``configure_model`` only compiles (``model.compile``),
  it shards nothing.
"""

import io
import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

LIGHTNING_TIP = re.compile(r"Tip: For seamless cloud logging")
DALI_OWN_ALIAS = re.compile(r"`nvidia\.dali\.fn\.experimental\.(equalize|filter)` is now deprecated")


class _Drop(logging.Filter):
    """Drops a logger's records whose message matches ``pattern``."""

    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def _drop_from(logger_name: str, pattern: re.Pattern) -> None:
    """Adds the filter once (``quiet_known_noise`` is called in every process, and again for an in-process run)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, _Drop) and f.pattern is pattern for f in target.filters):
        target.addFilter(_Drop(pattern))


OURS = ("trainer", "data_pipelines", "models", "hydra_plugins", "__main__")


class OnTheConsole(logging.Filter):
    """The log records the console shows: this project's, and every library's warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in OURS


class ConsoleFormatter(logging.Formatter):
    """The console's lines: the message alone (``warning: ...`` for a warning), a Python warning without the
    path and source line the warnings module adds."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "py.warnings":  # "path:line: Category: message\n  source"
            message = re.sub(r"^.*?:\d+: \w+: ", "", message.split("\n", 1)[0])
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return f"warning: {message}" if record.levelno == logging.WARNING else message


def quiet_known_noise() -> None:
    """Installs the filters (idempotent; call in every process before the Trainer is built, after logging is
    configured); the Python warnings the libraries raise go through logging (``py.warnings``), to the console and
    ``run.log``, and Lightning's records through the root's handlers (``lightning_through_the_root``)."""
    logging.captureWarnings(True)
    os.environ.setdefault("WANDB_SILENT", "true")  # W&B's banner and closing block: our summary says where it is
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"You're using the WeightAveraging callback with a model that overrides "
                                              r"the configure_model callback")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):  # rank_zero_info's
        _drop_from(name, LIGHTNING_TIP)
    _drop_from("py.warnings", DALI_OWN_ALIAS)
    lightning_through_the_root()


# Lightning's own loggers: imported before logging is configured, Lightning gives them a console handler of their own
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


def lightning_through_the_root() -> None:
    """Lightning's records through the root logger's handlers (the console's filter, ``run.log``).

    Imported before logging is configured, Lightning gives its loggers a console handler of their own and stops
    them propagating (``pytorch_lightning/__init__.py``), so that its INFO lines ("GPU available", "Seed set to",
    "Restoring states") reach the console whatever Hydra sets up later: a resume imports it to check the
    checkpoint before Hydra starts, and evaluate and bench import it at their top. Undone here once the root
    has handlers."""
    if not logging.getLogger().handlers:
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


def console_without_hydra() -> None:
    """For a command that does not run under Hydra and prints its own results (``trainer.bench``): on the console
    every library's warnings and errors, as in a run; no INFO line (the trainer's opening block and the libraries'
    lines describe a run folder that is temporary; there is no run folder to keep them in). Then the known noise
    filtered, as in a run."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(ConsoleFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    quiet_known_noise()


def process_rank(environ=os.environ) -> int:
    """This process's rank as its launcher set it before any library started (torchrun's RANK, Slurm's
    SLURM_PROCID, Lightning's LOCAL_RANK for the processes it starts itself); 0 when launched alone."""
    return int(environ.get("RANK") or environ.get("SLURM_PROCID") or environ.get("LOCAL_RANK") or 0)


# What a terminal does with the text, not the text: colours, cursor moves, line erases, window titles.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]")
# A frame of Lightning's Rich progress bar ("Epoch 3/29 ━━━━╸   1365/1875 0:07:06 • 5.44it/s ..."), whose
# metrics wrap onto lines indented to the metrics column: redrawn many times a second on a terminal.
_BAR_FRAME = re.compile(r"^(Epoch \d+/\d+|Validation|Sanity Checking|Testing|Predicting)\b.*[━╸]")
_WRAPPED = re.compile(r"^ {20,}\S")


class _ConsoleFile:
    """The run folder's copy of the console: complete lines as the user read them (control sequences
    applied, not stored; the progress bar's frames left out: each epoch has its own line), opened on
    the first line, appended to (a resumed run continues its file)."""

    def __init__(self, path: Path) -> None:
        self.path, self._file, self._in_frame = path, None, False
        self._partial: dict[str, str] = {}

    def add(self, stream: str, text: str) -> None:
        lines = (self._partial.pop(stream, "") + text).split("\n")
        self._partial[stream] = lines.pop()
        for line in lines:
            self._line(_CONTROL.sub("", line).rsplit("\r", 1)[-1].rstrip())

    def _line(self, line: str) -> None:
        if _BAR_FRAME.match(line) or (self._in_frame and _WRAPPED.match(line)):
            self._in_frame = True
            return
        self._in_frame = False
        if self._file is None:
            if not self.path.parent.is_dir():  # the run folder was removed (a start that trained nothing): no copy
                return
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses no line
            self._file.write(f"--- {datetime.now():%Y-%m-%d %H:%M:%S} {' '.join(sys.argv)}\n")
        self._file.write(line + "\n")

    def close(self) -> None:
        for stream in list(self._partial):
            self.add(stream, "\n")
        if self._file is not None:
            self._file.close()


class _Tee(io.TextIOBase):
    """A standard stream that also hands what it writes to the console file."""

    def __init__(self, stream, name: str, copy: _ConsoleFile) -> None:
        self.stream, self.name, self.copy = stream, name, copy

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.copy.add(self.name, text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # Rich, tqdm and W&B decide on colours and animation from the real stream
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return self.stream.encoding

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


_BEFORE_FOLDER: list[str] = []


def say_before_folder(text: str) -> None:
    """Prints a line to stderr before the run folder exists; ``copied_to`` then puts it in the copy first."""
    print(text, file=sys.stderr)
    _BEFORE_FOLDER.append(text)


@contextmanager
def copied_to(folder: Path, rank: int | None = None):
    """Within: what this process writes to stdout and stderr (log records included) also goes to
    ``folder/console.log`` (``console-rank<N>.log`` for the other processes of a multi-process run),
    after what ``say_before_folder`` printed."""
    rank = process_rank() if rank is None else rank
    copy = _ConsoleFile(Path(folder) / ("console.log" if rank == 0 else f"console-rank{rank}.log"))
    for line in _BEFORE_FOLDER:
        copy.add("stderr", line + "\n")
    real = {"stdout": sys.stdout, "stderr": sys.stderr}
    tees = {name: _Tee(stream, name, copy) for name, stream in real.items()}
    handlers = [h for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                for h in getattr(logger, "handlers", []) if type(h) is logging.StreamHandler]
    pointed = [(h, h.stream) for h in handlers if h.stream in real.values()]
    for handler, stream in pointed:  # Hydra's console handler holds the stream it was given at start-up
        handler.setStream(tees["stdout" if stream is real["stdout"] else "stderr"])
    sys.stdout, sys.stderr = tees["stdout"], tees["stderr"]
    try:
        yield copy.path
    finally:
        sys.stdout, sys.stderr = real["stdout"], real["stderr"]
        for handler, stream in pointed:
            handler.setStream(stream)
        copy.close()
