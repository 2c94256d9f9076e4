"""``python -m trainer.evaluate ckpt_path=PATH [protocol=center|tencrop|dense|multiscale]``: score a checkpoint
under a paper's protocol (``dense``/``multiscale``: the whole image at the paper's test scales, the network fully
convolutional, ``models/dense.py``).

The result goes next to the papers' figures on the console, and into the W&B run that trained the
checkpoint (its id is in the checkpoint): ``eval/<protocol>/top1_err``, ``paper/*`` and ``gap/*``.

``python -m trainer.evaluate model=resnet50 model.weights=torchvision`` scores published weights instead
(or ``model.weights=PATH``, a state dict): a check of an ImageNet copy and of this data pipeline,
printed beside torchvision's published figures for those weights and the paper's.
"""

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from data_pipelines.protocols import EVAL_PROTOCOLS

from .cli import (
    REFUSED,
    default_data_overrides,
    did_you_mean,
    exit_on_user_error,
    override_syntax_error,
    override_value,
    pause_collector,
    resume_collector,
    run_folder_of,
)
from .config_check import ConfigValueError
from .results import tracking
from .results.paper_comparison import coverage, print_comparison, references_for, summary_fields, target
from .run import console

# Hydra, Lightning, torch and DALI (seconds to import) are imported where they are used, after the command line
# is checked: a mistyped protocol is said at once (tests/trainer/test_evaluate_and_report.py holds it).


NOTHING_TO_EVALUATE = ("nothing to evaluate: pass ckpt_path=outputs/<model>/<run>/checkpoints/best.ckpt, or "
                       "model.weights=PATH|torchvision with model=<name>")


def model_override(overrides: list[str]) -> list[str]:
    """Adds ``model=<the checkpoint's model>`` and the input it was trained at (``model.input_size``,
    ``model.in_channels``), each unless the command line chose it.

    Raises:
        CheckpointError: the checkpoint cannot be read (``load_checkpoint``'s one line).
    """
    from .run.checkpoints import load_checkpoint

    path = override_value(overrides, "ckpt_path")
    if not path:
        return overrides  # evaluate() says that ckpt_path is missing
    hparams = load_checkpoint(path, mmap=True).get("hyper_parameters") or {}  # the weights are not read
    if not hparams.get("model_name"):
        return overrides
    added = [f"model={hparams['model_name']}"] if override_value(overrides, "model") is None else []
    added += [f"model.{key}={hparams[key]}" for key in ("input_size", "in_channels")
              if key in hparams and override_value(overrides, f"model.{key}") is None]
    return [*overrides, *added]


def test_scales(cfg: DictConfig, references) -> list[int] | None:
    """The dense protocols' test scales: ``scales=[...]`` when given, else those of the paper row the run is
    compared with under this protocol (VGG's Q, ResNet's five sides), else None: for ``dense`` the data module's
    own (``data.resize_size``; the whole field for the digits).

    Raises:
        ConfigValueError: ``multiscale`` with no scales given and none in the model's rows.
    """
    from data_pipelines.protocols import DENSE_PROTOCOLS

    if cfg.protocol not in DENSE_PROTOCOLS:
        return None
    if cfg.get("scales"):
        return [int(s) for s in cfg.scales]
    row = target(references, cfg.protocol, cfg.data.name, cfg.data.get("preset"), cfg.get("experiment_name"))
    if row is not None and row.protocol == cfg.protocol and row.scales:
        return list(row.scales)
    if cfg.protocol == "dense":
        return None
    raise ConfigValueError(f"protocol=multiscale averages over several test scales and the papers' rows of "
                           f"{cfg.model.model_name} give none: pass them, e.g. scales=[224,256,384,480,640] "
                           f"(ResNet's, He et al. 2015 section 3.4)")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Validates ``cfg.ckpt_path`` (or the network with ``model.weights``) under ``cfg.protocol``; returns the
    errors and the paper fields."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from models.weights import torchvision_weights

    from .parallel.devices import check_gpus_usable
    from .parallel.fast_path import resolve, runs_on_cuda
    from .run.checkpoints import CheckpointError, check_compatible, checkpoint_weights

    resume_collector()  # paused by main() for the imports
    console.quiet_known_noise()  # the console as a run's: Lightning's and W&B's lines go to run.log only
    weights = cfg.model.get("weights")
    if not cfg.get("ckpt_path") and not weights:
        raise CheckpointError(NOTHING_TO_EVALUATE)
    ckpt = check_compatible(cfg.ckpt_path, cfg.model.model_name, cfg.data.num_classes) if cfg.get("ckpt_path") else {}
    check_gpus_usable(cfg.trainer.accelerator)
    cfg = resolve(cfg, cuda=runs_on_cuda(cfg))
    references = references_for(cfg.model.model_name, cfg.get("compare_with"))
    cfg.data.eval_protocol = cfg.protocol
    cfg.data.eval_scales = test_scales(cfg, references)
    from data_pipelines.protocols import DIGIT_PRESETS

    if cfg.protocol == "tencrop" and cfg.data.get("preset") in DIGIT_PRESETS:
        print(f"warning: protocol=tencrop on {cfg.data.image_size} px inputs: on digits the ten views are the whole "
              f"field five times and its mirror image five times (the crops are as large as the field), and a "
              f"mirrored digit is another glyph (a mirrored 3 reads as an epsilon): the figure measures mirror "
              f"images, far above centre's, and no paper evaluated LeNet-5 with ten crops. protocol=center is the "
              f"papers' protocol for it", file=sys.stderr)
    elif cfg.protocol == "tencrop" and cfg.data.image_size < 64:
        print(f"warning: protocol=tencrop on {cfg.data.image_size} px inputs: the papers' ten crops are 224 px crops "
              f"of 256 px images (AlexNet section 4.1); crops of so small an image move it by a few pixels only, so "
              f"the figure is not comparable with theirs", file=sys.stderr)
    if weights == "torchvision" and cfg.data.get("preset") == "alexnet":
        cfg.data.preset = "resnet"  # torchvision's weights take ImageNet's mean/std normalisation, not the mean pixel
        print("note: torchvision's weights expect mean/std normalisation: evaluating with data.preset=resnet's")
    datamodule, module = instantiate(cfg.data), instantiate(cfg.model)  # model.weights are loaded here
    if ckpt:
        module.load_state_dict(checkpoint_weights(ckpt, cfg.get("eval_weights", "live"), cfg.ckpt_path))  # read once
    trainer = pl.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                         benchmark=cfg.trainer.benchmark, logger=False, enable_checkpointing=False,
                         # on a terminal only: off one (a log file, a Slurm job) a bar leaves only its frames
                         enable_progress_bar=cfg.trainer.enable_progress_bar and sys.stdout.isatty(),
                         limit_val_batches=cfg.trainer.limit_val_batches, enable_model_summary=False)
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    top1, top5 = float(metrics["val/top1_err"]), float(metrics["val/top5_err"])
    images, set_images = metrics.get("val/images"), metrics.get("val/set_images")
    partial = coverage(images, set_images)  # trainer.limit_val_batches: part of the set, never against a paper
    fields = {f"eval/{cfg.protocol}/top1_err": top1, f"eval/{cfg.protocol}/top5_err": top5,
              f"eval/{cfg.protocol}/images": images, f"eval/{cfg.protocol}/set_images": set_images,
              f"eval/{cfg.protocol}/scales": list(datamodule.graph["scales"]) or None,
              f"eval/{cfg.protocol}/weights": cfg.get("eval_weights", "live") if ckpt else None,
              **summary_fields(top1, top5, cfg.protocol, references, cfg.data.name, cfg.data.get("preset"), partial,
                               cfg.get("experiment_name"))}
    fields = {k: v for k, v in fields.items() if v is not None}
    if ckpt.get("wandb_run_id") and tracking.uses_wandb(cfg.get("logger")):  # into the training's W&B run
        here = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
        fields["wandb_dir"] = tracking.log_evaluation(ckpt["wandb_run_id"], cfg.logger, fields, cfg.protocol, here)
    source = cfg.get("ckpt_path") or f"model.weights={weights}"
    part = f" (on {partial}: partial)" if partial else ""
    scales = list(datamodule.graph["scales"])
    at = f" at shorter side {', '.join(map(str, scales))}" if scales else ""
    print(f"{cfg.model.model_name} from {source}, {cfg.protocol}{at}: val top-1 error {top1:.2f} %, top-5 {top5:.2f} %"
          f"{part}")
    if weights == "torchvision" and not ckpt:
        published = torchvision_weights(cfg.model.model_name)
        acc = published.meta["_metrics"]["ImageNet-1K"]
        fields.update({"torchvision/top1_err": 100 - acc["acc@1"], "torchvision/top5_err": 100 - acc["acc@5"]})
        print(f"torchvision's published figures for these weights ({published}, ImageNet-1K val, shorter side "
              f"{published.transforms().resize_size[0]}, centre {published.transforms().crop_size[0]}): top-1 error "
              f"{100 - acc['acc@1']:.2f} %, top-5 {100 - acc['acc@5']:.2f} % "
              f"(this run: gap {top1 - 100 + acc['acc@1']:+.2f},"
              f" {top5 - 100 + acc['acc@5']:+.2f})")
    print_comparison(top1, top5, cfg.protocol, cfg.data.name, references, cfg.data.get("preset"), partial=partial,
                     experiment=cfg.get("experiment_name"))
    return {"val/top1_err": top1, "val/top5_err": top5, **fields}


def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    with console.copied_to(Path(HydraConfig.get().runtime.output_dir)):
        exit_on_user_error(evaluate, cfg)


def log_beside_the_run(overrides: list[str]) -> list[str]:
    """An evaluation of one of this project's checkpoints logs into that run's folder, in a folder of its own
    (``<run>/evaluate/<protocol>_<date>_<time>/``), not into a folder of Hydra files under ``outputs/``."""
    from datetime import datetime

    ckpt = override_value(overrides, "ckpt_path")
    run = run_folder_of(ckpt) if ckpt and override_value(overrides, "hydra.run.dir") is None else None
    if run is None:
        return overrides
    protocol = override_value(overrides, "protocol") or "center"
    folder = run / "evaluate" / (protocol + datetime.now().strftime("_%Y-%m-%d_%H-%M-%S"))
    return [*overrides, f"hydra.run.dir={folder}"]


def protocol_error(overrides: list[str]) -> str | None:
    """A ``protocol=`` that is not one of the test protocols, in one line with the nearest."""
    value = override_value(overrides, "protocol")
    if value is None or value in EVAL_PROTOCOLS:
        return None
    return (f"protocol={value} is not a test protocol{did_you_mean('protocol', value, EVAL_PROTOCOLS)} (the "
            f"protocols: {', '.join(EVAL_PROTOCOLS)})")


def nothing_to_evaluate(overrides: list[str]) -> str | None:
    """No checkpoint and no weights named: said before Hydra makes a folder for an evaluation of nothing."""
    if override_value(overrides, "ckpt_path") or override_value(overrides, "model.weights"):
        return None
    return NOTHING_TO_EVALUATE


def main() -> None:
    pause_collector()  # until the libraries are loaded (evaluate)
    if wrong := (protocol_error(sys.argv[1:]) or override_syntax_error(sys.argv[1:])
                 or nothing_to_evaluate(sys.argv[1:])):
        print(f"error: {wrong}", file=sys.stderr)
        sys.exit(REFUSED)
    from .run.checkpoints import CheckpointError

    try:  # a checkpoint that cannot be read is named before Hydra makes a folder for the evaluation
        overrides = model_override(sys.argv[1:])
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(REFUSED)
    sys.argv[1:] = log_beside_the_run(default_data_overrides(overrides, doing="evaluating"))
    import hydra

    hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")(_main)()


if __name__ == "__main__":
    main()
