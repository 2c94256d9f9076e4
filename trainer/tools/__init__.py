"""The commands of their own, each behind a thin entry point in ``trainer/`` (``python -m trainer.evaluate``,
``.export``, ``.bench``; ``.report`` is ``results/report``): scoring a checkpoint (``evaluate.py``), exporting it
(``export.py``) and the trainer's benchmark (``bench/``). The top of the house: they may import everything below,
nothing imports them. (The GPU check is a tool of the checkout, not of the package: ``tools/gpu_check``.)
"""
