"""Ctrl-C and SIGTERM (outside Slurm's USR2 preemption): stop at the next step with a checkpoint, and say how
to resume.

The first signal is only noted. At the next step (the next logging step when several processes must agree,
as for the preemption signal) every process writes ``last.ckpt`` for that step (atomically, as always) and
the run stops: the W&B run is closed, the console gives the global step, the checkpoint and the command that
resumes it, and the exit status is the shell's for the signal (130 for Ctrl-C, 143 for SIGTERM). Resuming
from that checkpoint trains exactly as a run never interrupted (mid-epoch resume restores the data
position). A second Ctrl-C stops at once. The callback is ``trainer.callbacks.StopOnSignal``; this module
stays light, for the entry point.
"""

import shlex
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
received: list[int] = []  # the signals this process got during fit (the callback and __main__ read it)


class RunInterrupted(Exception):
    """The run stopped on a signal after writing its checkpoint (the message says how to resume)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = EXIT_STATUS[signum]


@contextmanager
def noted_signals():
    """Around ``trainer.fit``: Ctrl-C and SIGTERM are noted in ``received`` (the callback acts on them at the
    next step); a second Ctrl-C acts at once. The previous handlers are back afterwards.
    (Installed here, not in a callback's hook: Lightning saves the handlers it finds at its start and puts
    them back at its end, so ones installed during fit would outlive it.)"""
    def note(signum, frame):
        received.append(signum)
        if signum == signal.SIGINT:  # a second Ctrl-C acts at once; repeated SIGTERMs (srun sends several) do not
            signal.signal(signum, signal.default_int_handler)

    received.clear()
    previous = {signum: signal.signal(signum, note) for signum in EXIT_STATUS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def resume_command(ckpt: Path) -> str:
    """This run's command line with ``ckpt_path`` set to ``ckpt`` (replacing an earlier one)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    return " ".join(["python -m trainer", *map(shlex.quote, kept), shlex.quote(f"ckpt_path={ckpt}")])
