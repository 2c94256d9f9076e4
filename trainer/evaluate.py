"""``python -m trainer.evaluate``: score a checkpoint under a paper's protocol (``trainer/tools/evaluate``)."""

import sys

from .tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
