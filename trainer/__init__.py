"""The Lightning and Hydra side: ``python -m trainer`` trains a model from the configs in ``conf/``.

    __main__.py, cli.py, train.py   the entry point, what every command shares, a run built from its parts
    config_check/                   every value a user can set, checked before anything starts
    evaluate.py, export.py          python -m trainer.evaluate (train's twin: conf/evaluate.yaml), .export
    report/, bench/                 python -m trainer.report (runs as a table and a plot), .bench
    run/          one run: the LightningModule, its callbacks, checkpoints, stop on a signal, folder, console
    parallel/     several devices and nodes: the two-GPU split, devices, the GPU fast path, lost peers, Slurm
    results/      the papers' figures and the comparison, the summary, W&B
    optim/        what the papers trained with and PyTorch lacks (LeNet-5's SDLM, MAP loss, pass-wise rate)

Lower packages never import higher ones: optim and results, then run, then parallel, then the commands (each
also a console script: pyproject.toml's [project.scripts]).
"""

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent  # the checkout: conf/ beside it, the git commit a run records
CONF = PROJECT / "conf"



def _model_input(name: str, part: str) -> int:
    """A network's design input, ``size`` or ``channels``, from the one place that says it (torch-free)."""
    from models.catalogue import CATALOGUE

    channels, size, _ = CATALOGUE[name].input_shape
    return {"size": size, "channels": channels}[part]


try:  # The resolvers of conf/, registered here, where every command and test that composes a config passes:
    from omegaconf import OmegaConf  # ${minus:a,b}: a cosine over the epochs after its warm-up (schedule/cosine.yaml)

    OmegaConf.register_new_resolver("minus", lambda a, b: a - b, replace=True)
    OmegaConf.register_new_resolver("times", lambda a, b: a * b, replace=True)  # the effective batch (lenet5_passes)
    OmegaConf.register_new_resolver("model_input", _model_input, replace=True)  # conf/model_base/classifier.yaml
except ImportError:  # tools/gpu_check's installer runs on the standard library alone, before OmegaConf exists
    pass


def target_is(node, cls: type) -> bool:
    """Whether a config node builds ``cls`` or a subclass of it: its ``_target_`` resolved to the class (imported),
    never matched by name. (Here, at the bottom of the house: every package of ``trainer`` asks it.)"""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    target = OmegaConf.select(node, "_target_", default=None) if OmegaConf.is_config(node) else None
    built = get_class(str(target)) if target else None
    return isinstance(built, type) and issubclass(built, cls)
