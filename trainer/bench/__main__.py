"""``python -m trainer.bench``: see the package docstring."""

from ..cli import pause_collector, resume_collector

pause_collector()  # as python -m trainer does, until the libraries are loaded

import argparse
import json
import resource
import statistics
import sys
import warnings

import torch
from hydra import compose, initialize_config_dir

from .. import CONF, target_is
from ..cli import REFUSED, exit_on_user_error
from ..config_check import ConfigValueError, check_values
from ..optim import SDLM
from ..parallel.devices import check_gpus_usable
from ..parallel.fast_path import resolve, runs_on_cuda
from ..run import console
from ..train import strategy_plan
from . import __doc__ as DOC
from .breakdown import breakdown, print_table
from .flops import dense_peak_flops, training_flops_per_image
from .measure import AUTOCAST, bench_bare, bench_trainer, peak_gpu_mb

resume_collector()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench", description=DOC.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., data.batch_size=..., ...)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    parser.add_argument("--real-data", action="store_true",
                        help="the trainer reads the data config (data=imagenet data.root=...) through DALI instead "
                             "of an in-memory batch: the full path against the bare loop's compute")
    parser.add_argument("--tiny-net", action="store_true",
                        help="with --breakdown: a single linear layer in place of the network, so that the step "
                             "computes next to nothing and the loop's fixed cost per step is what is timed")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads, as cpu_threads=N (default: the run's own choice, cpu_threads=auto)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the trainer's parts added one at a time, from a bare PyTorch loop to the whole "
                             "trainer (one process), and print where the time per step goes")
    parser.add_argument("--beside", type=int, default=None, metavar="N",
                        help="the same short training (real data) as one process alone and as N processes at once, "
                             "each one's img/s and the ratio to alone: what runs sharing this machine's CPUs get")
    parser.add_argument("--trainer-only", action="store_true", help=argparse.SUPPRESS)  # a --beside process
    args = parser.parse_intermixed_args(argv)  # options and overrides in any order
    console.console_without_hydra()  # this tool's lines and the warnings; W&B's banner and Lightning's INFO lines not
    # the benchmark trains without validation on purpose
    warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no `val_dataloader`")
    if args.threads:
        args.overrides.append(f"cpu_threads={args.threads}")
    if args.beside:
        if args.beside < 2:
            parser.error(f"--beside {args.beside}: give the number of processes to run at once, 2 or more")
        from .beside import bench_beside

        print(json.dumps(bench_beside(args.beside, args.overrides, args.warmup, args.steps, args.repeats)))
        return 0
    # a short step by default (LeNet-5 at batch 32: about 10 ms on 2 CPU cores, a fast GPU's step length), so
    # that the trainer's fixed cost per step shows
    defaults = ["model=lenet5", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
                "trainer.max_epochs=1", "paths.output_dir=.", "trainer.devices=1"]
    given = {o.split("=", 1)[0] for o in args.overrides}
    if not given & {"experiment", "data.batch_size"}:  # an experiment's own batch is kept (lenet5_1998: 4)
        defaults.append("data.batch_size=32")
    # a constant lr (the schedule does not change a step's time), unless an experiment brings its own: on the
    # command line schedule=constant would win over the experiment's schedule and leave its settings (lenet5_1998's
    # schedule.scheduler.scale) without a scheduler
    if not given & {"experiment", "schedule"}:
        defaults.append("schedule=constant")
    if not any(o.startswith("logger=") for o in args.overrides):  # W&B as a user has it, but never uploaded
        defaults += ["logger=wandb", "logger.offline=true"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*defaults, *args.overrides])
    # what a run refuses (a split of another model than AlexNet, ...), before anything is measured
    exit_on_user_error(lambda cfg: refusals(cfg, args.trainer_only), cfg, status=REFUSED)
    if args.breakdown:
        exit_on_user_error(lambda cfg: run_breakdown(cfg, args.warmup, args.steps, args.repeats, args.tiny_net), cfg)
    else:
        exit_on_user_error(lambda cfg: bench(cfg, args.warmup, args.steps, args.repeats, args.real_data,
                                             args.trainer_only), cfg)
    return 0


def run_breakdown(cfg, warmup: int, steps: int, repeats: int, tiny: bool = False) -> None:
    check_gpus_usable(cfg.trainer.accelerator)
    cuda = runs_on_cuda(cfg)
    cfg, device = resolve(cfg, cuda=cuda), torch.device("cuda" if cuda else "cpu")
    print(f"{'a single linear layer' if tiny else cfg.model.model_name}, batch {cfg.data.batch_size}, "
          f"{cfg.trainer.precision}, {device}, "
          f"{torch.get_num_threads()} threads; {steps} steps after {warmup} warm-up, {repeats} repeats, median; "
          f"ms per step", flush=True)
    result = breakdown(cfg, warmup, steps, repeats, device, tiny)
    print_table(result)
    print(json.dumps({"model": "tiny" if tiny else cfg.model.model_name, "batch_size": cfg.data.batch_size,
                      "device": str(device), "steps": steps, "repeats": repeats, **result}))


def refusals(cfg, trainer_only: bool = False) -> None:
    """What a run refuses (``config_check``), and SDLM against the bare loop, which estimates no curvature."""
    check_values(cfg)
    if target_is(cfg.optim, SDLM) and not trainer_only:  # the bare loop has no curvature
        raise ConfigValueError("trainer.bench times the step against a bare PyTorch loop, which has no curvature "
                               "estimate for optim=sdlm; time SDLM with --beside (the trainer alone and beside others: "
                               "python -m trainer.bench --beside 2 experiment=lenet5_1998 data=mnist) or with the "
                               "trainer's own progress lines: python -m trainer experiment=lenet5_1998 data=mnist "
                               "trainer.max_steps=300 progress_every_s=2 logger=none (docs/reproducing.md)")


def bench(cfg, warmup: int, steps: int, repeats: int, real_data: bool = False, trainer_only: bool = False) -> None:
    """Measures and prints (the first process only), the JSON line last."""
    check_gpus_usable(cfg.trainer.accelerator)
    overrides = strategy_plan(cfg)  # a strategy's checks before any process starts (Trainer overrides)
    cuda = runs_on_cuda(cfg, overrides.get("accelerator"))
    cfg, device = resolve(cfg, cuda=cuda), torch.device("cuda" if cuda else "cpu")
    print(f"{cfg.model.model_name}, batch {cfg.data.batch_size} of {cfg.model.in_channels}x{cfg.model.input_size}x"
          f"{cfg.model.input_size}, {cfg.trainer.precision}, {device}, {torch.get_num_threads()} threads; "
          f"{steps} steps after {warmup} warm-up, {repeats} repeats, median; trainer data: "
          f"{'DALI, ' + cfg.data.name if real_data else 'an in-memory batch'}", flush=True)
    trainer_rates, bare_rates, first_steps, peaks = [], [], [], {}
    for repeat in range(repeats):
        rate, first, first_process, threads = bench_trainer(cfg, warmup, steps, overrides, real_data)
        if not first_process:  # the other processes only take part in the trainer's collective steps
            continue
        peaks["trainer"] = peak_gpu_mb(device)
        trainer_rates.append(rate)
        first_steps.append(first)
        if trainer_only:  # one process of --beside: its rate and threads, nothing else
            print(json.dumps({"trainer_img_s": rate, "cpu_threads": threads}))
            return
        bare_rates.append(bench_bare(cfg, warmup, steps, device))
        peaks["bare"] = peak_gpu_mb(device)
        print(f"repeat {repeat + 1}: trainer {rate:8.1f} img/s, bare loop {bare_rates[-1]:8.1f} img/s", flush=True)
    if not trainer_rates:
        return
    trainer_img_s, bare_img_s = statistics.median(trainer_rates), statistics.median(bare_rates)
    figures = {"model": cfg.model.model_name, "strategy": cfg.strategy.name, "batch_size": cfg.data.batch_size,
               "precision": cfg.trainer.precision, "device": str(device), "real_data": real_data,
               "trainer_img_s": round(trainer_img_s, 1), "bare_img_s": round(bare_img_s, 1),
               "ratio": round(trainer_img_s / bare_img_s, 3),
               "trainer_step_ms": round(1000 * cfg.data.batch_size / trainer_img_s, 2),
               "bare_step_ms": round(1000 * cfg.data.batch_size / bare_img_s, 2),
               "overhead_ms_per_step": round(1000 * cfg.data.batch_size * (1 / trainer_img_s - 1 / bare_img_s), 3),
               "first_step_s": round(statistics.median(first_steps), 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    flops = training_flops_per_image(cfg)
    figures["train_flops_per_image"] = flops
    if device.type == "cuda":
        figures["peak_gpu_mb"], figures["bare_peak_gpu_mb"] = peaks["trainer"], peaks["bare"]
        peak = dense_peak_flops(device, AUTOCAST.get(cfg.trainer.precision, "tfloat32" if cfg.tf32 else torch.float32))
        if peak:  # None: a GPU missing from Lightning's table
            # a process of the split holds one tower, half of every layer: half the model's FLOPs per image
            per_gpu = flops / 2 if cfg.strategy.name == "two_gpu_split" else flops
            figures["gpu_peak_tflops"] = round(peak / 1e12, 1)
            figures["mfu"] = round(per_gpu * trainer_img_s / peak, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
