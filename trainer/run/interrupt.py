"""Ctrl-C, SIGTERM (Slurm's end of a job, Kubernetes, spot instances, ``kill``): one stop path, from the first
line of ``python -m trainer`` to its last.

- **Set-up** (from ``install()``, the entry point's first line, until training begins): the signal stops the
  command at once with ``StoppedBeforeTraining``; the entry point removes what this start created (a new run
  folder, or a resume's new config folder) and says so in one line. Nothing was trained.
- **Training** (``noted_signals()``, around ``trainer.fit``): the signal is only noted. At the next training
  step, or the next validation batch, every process writes ``last.ckpt`` at that step (atomically, as always;
  a write in progress is finished first: the handler never interrupts it) and the run stops with one line that
  gives the global step, the checkpoint and the command that resumes it (``callbacks/stop_on_signal.py``).
  Stopped in mid-validation, the checkpoint holds the training state and the validation is run again on resume.
- **Closing** (after training ended: the summary, W&B's finish): noted; the command ends as it would, then
  says that the run had finished and exits with the signal's status.

The exit status is the shell's for the signal: 130 for Ctrl-C, 143 for SIGTERM. Later signals while stopping
are noted, and the first of them is answered with one line (people press Ctrl-C twice); a third Ctrl-C quits at
once, leaving the last checkpoint written before (writes are atomic: it is whole). This module stays light: the
entry point imports it before anything else.
"""

import os
import shlex
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
QUIT_AT_ONCE = 3  # the Ctrl-C that abandons the stop in progress
received: list[int] = []  # the signals this process got since training began (the callback and cli read it)
_stage = ["off"]  # off (handlers not ours: a test, a notebook) | importing | setup | training | closing


class RunInterrupted(Exception):
    """The run stopped on a signal after writing its checkpoint (the message says how to resume)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = EXIT_STATUS[signum]


class StoppedBeforeTraining(BaseException):
    """A signal during set-up: nothing was trained. A BaseException, as KeyboardInterrupt is, so that no
    library's ``except Exception`` swallows it on its way to the entry point."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum, self.exit_status = signum, EXIT_STATUS[signum]


def install() -> None:
    """The handlers of ``python -m trainer``, for its whole life (its first line, before the heavy imports: a
    signal while they run is noted, and acted on as ``setup_begins()``)."""
    _stage[0] = "importing"
    received.clear()
    for signum in EXIT_STATUS:
        signal.signal(signum, _on_signal)


def setup_begins() -> None:
    """The entry point's ``main()`` has begun (its imports are done): a signal stops it from here, at once."""
    if _stage[0] == "importing":
        _stage[0] = "setup"
        if received:
            _stage[0] = "closing"
            raise StoppedBeforeTraining(received[0])


def _on_signal(signum, frame) -> None:
    received.append(signum)
    if _stage[0] == "importing":
        return
    if _stage[0] == "setup":
        _stage[0] = "closing"  # a second signal while this one unwinds is only noted
        raise StoppedBeforeTraining(signum)
    repeats = len(received)
    if signum == signal.SIGINT and received.count(signal.SIGINT) >= QUIT_AT_ONCE:
        os.write(2, b"\nquit at once: the last checkpoint written before this stop is kept (checkpoints are "
                    b"written whole or not at all)\n")
        os._exit(EXIT_STATUS[signum])  # no clean-up: that is what a third Ctrl-C asks for
    if repeats == 2:  # once: Ctrl-C is often pressed twice; repeated SIGTERMs (srun sends several) say nothing more
        more = {1: "once", 2: "twice"}.get(QUIT_AT_ONCE - received.count(signal.SIGINT), "again")
        os.write(2, (f"\nalready stopping: writing the checkpoint of the next step (Ctrl-C {more} more quits at "
                     f"once, without it)\n" if _stage[0] == "training" else
                     "\nalready stopping: the run is closing\n").encode())


@contextmanager
def noted_signals():
    """Around ``trainer.fit``: Ctrl-C and SIGTERM are noted in ``received`` and acted on at the next step or
    validation batch (``StopOnSignal``); afterwards, in ``python -m trainer``, the run is closing. Called
    without ``install()`` (``train()`` from Python), the handlers are installed here and the previous ones put
    back afterwards. (Installed here, not in a callback's hook: Lightning saves the handlers it finds at its
    start and puts them back at its end, so ones installed during fit would outlive it.)"""
    ours = _stage[0] != "off"
    previous = {} if ours else {signum: signal.signal(signum, _on_signal) for signum in EXIT_STATUS}
    received.clear()
    _stage[0] = "training"
    try:
        yield
    finally:
        _stage[0] = "closing" if ours else "off"
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def back_to_setup() -> None:
    """The next point of an in-process sweep is set up: a signal then stops it before it trains, as does one
    that came while the previous point was closing."""
    if _stage[0] == "closing":
        if received:
            raise StoppedBeforeTraining(received[0])
        _stage[0] = "setup"


def ignore_from_here() -> None:
    """The command is over (its message said): later signals are ignored, so that Python's own exit, which puts
    the default handlers back, and W&B's closing at exit are not cut short."""
    if _stage[0] != "off":
        for signum in EXIT_STATUS:
            signal.signal(signum, signal.SIG_IGN)


def resume_command(ckpt: Path, drop: tuple[str, ...] = ()) -> str:
    """This run's command line with ``ckpt_path`` set to ``ckpt`` (replacing an earlier one), without the
    settings in ``drop`` (which the caller gives anew)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("ckpt_path", *drop)]
    return " ".join(["python -m trainer", *map(shlex.quote, kept), shlex.quote(f"ckpt_path={ckpt}")])
