"""``python -m trainer.export``: a checkpoint out as torchvision's state dict or ONNX (``trainer/tools/export``)."""

import sys

from .tools.export import main

if __name__ == "__main__":
    sys.exit(main())
