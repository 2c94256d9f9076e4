"""One run: the LightningModule (``module.py``), the callbacks it always has (``callbacks/``), its checkpoints and
resume (``checkpoints.py``), its stop on a signal (``interrupt.py``), its folder (``run_folder.py``), what it
writes and where (``storage.py``), its console (``console.py``) and the loss it trains with (``loss_choice.py``).
It may import ``trainer.optim`` and ``trainer.results``; nothing here imports ``parallel`` or the commands
(``trainer/train.py``, which builds a run from these parts, sits above them).
"""
