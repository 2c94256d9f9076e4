"""``python -m trainer.bench``: training throughput against a bare PyTorch loop (``trainer/tools/bench``)."""

import sys

from .tools.bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
