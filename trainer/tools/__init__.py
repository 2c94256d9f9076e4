"""The commands of their own, each behind a thin entry point in ``trainer/`` (``python -m trainer.evaluate``,
``.export``, ``.bench``, ``.gpu_check``; ``.report`` is ``results/report``): scoring a checkpoint
(``evaluate.py``), exporting it (``export.py``), the trainer's benchmark (``bench/``) and the GPU check
(``gpu_check/``). The top of the house: they may import everything below, nothing imports them.
"""
