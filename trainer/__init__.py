"""The Lightning and Hydra side: ``python -m trainer`` trains a model from the configs in ``conf/``.

    __main__.py, cli.py, train.py   the entry point, what every command shares, a run built from its parts
    run/          one run: the LightningModule, its callbacks, checkpoints, stop on a signal, folder, console
    parallel/     several devices and nodes: the two-GPU split, devices, the GPU fast path, lost peers, Slurm
    results/      the papers' figures and the comparison, the summary, W&B, the report over many runs
    optim/        what the papers trained with and PyTorch lacks (LeNet-5's SDLM, MAP loss, pass-wise rate)
    tools/        commands of their own: evaluate, export, bench (thin entry points beside this file)

Lower packages never import higher ones: optim and results, then run, then parallel, then the entry points and
the tools.
"""

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent  # the checkout: conf/ beside it, the git commit a run records
CONF = PROJECT / "conf"
