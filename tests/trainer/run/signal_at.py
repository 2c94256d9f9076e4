"""``python tests/trainer/run/signal_at.py MODULE FUNCTION SIGNAL [trainer overrides]``: ``python -m trainer``
with SIGNAL sent to itself once, as the first call of ``MODULE.FUNCTION`` returns (FUNCTION may be
``Class.method``), for a signal at a chosen moment (the tests' deterministic timing; e.g. ``wandb init SIGTERM``:
just after W&B has started; ``StopOnSignal.on_train_batch_end``: after the first step's check, before the second
step's). Only this process is patched: the other processes of a multi-process run get no signal, as when ``kill``
names one."""

import importlib
import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
module, name, sent = sys.argv[1], sys.argv[2], getattr(signal, sys.argv[3])
target = importlib.import_module(module)
if "." in name:  # Class.method
    owner, name = name.split(".")
    target = getattr(target, owner)
real = getattr(target, name)


def then_signal(*args, **kwargs):
    result = real(*args, **kwargs)
    if not then_signal.sent:
        then_signal.sent = True
        os.kill(os.getpid(), sent)
    return result


then_signal.sent = False


setattr(target, name, then_signal)
sys.argv = ["trainer", *sys.argv[4:]]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
