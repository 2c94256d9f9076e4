"""``python -m trainer.bench``: training throughput against a bare PyTorch loop (``trainer/tools/bench``)."""

import sys

from .parallel.cpu_threads import openmp_wait

openmp_wait()  # as python -m trainer runs, before torch is loaded

from .tools.bench.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
