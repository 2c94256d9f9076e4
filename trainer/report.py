"""``python -m trainer.report``: the runs under a folder as a table and a plot (``trainer/results/report``)."""

import sys

from .results.report.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
