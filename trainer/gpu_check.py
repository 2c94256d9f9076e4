"""``python -m trainer.gpu_check``: every check that needs a GPU (``trainer/tools/gpu_check``)."""

import sys

from .tools.gpu_check.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
