"""The callbacks every run uses, one a file: its record (``RunRecord``), its metrics and epoch lines
(``StepMetrics``), its progress (``ProgressLines`` off a terminal, ``ProgressBar`` on one), the NaN guard
(``NonFiniteLossGuard``), the stop on Ctrl-C or SIGTERM (``StopOnSignal``) and the weights' moving average
(``EMAWeights``, when asked). The checkpoint callbacks are in
``run/checkpoints.py``; the ones of several processes (Slurm's preemption, a lost peer) in ``parallel/``."""

from .ema import EMAWeights
from .nonfinite_guard import NonFiniteLossError, NonFiniteLossGuard
from .progress_bar import ProgressBar
from .progress_lines import ProgressLines
from .run_record import RunRecord
from .step_metrics import StepMetrics
from .stop_on_signal import StopOnSignal

__all__ = ["EMAWeights", "NonFiniteLossError", "NonFiniteLossGuard", "ProgressBar", "ProgressLines", "RunRecord",
           "StepMetrics", "StopOnSignal"]
