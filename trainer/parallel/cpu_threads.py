"""torch's CPU threads for each training process: chosen for the CPUs the process really has, and OpenMP's
wait kept short, so that runs sharing a machine do not stall each other.

torch starts as many intra-op (OpenMP) threads as the machine has cores, whatever else runs there, and
libgomp's waiting threads spin (300,000 rounds) before they sleep. Two training processes on one machine
then ask for twice its cores, and a thread spins on a core while the sibling it waits for is not
scheduled: a step made of many small operations pays a scheduler time slice per operation. Measured on 2
cores with ``python -m trainer.bench --beside 2`` (docs/speed.md, "CPU threads"): LeNet-5 trained at 0.14
(4 images a step, SDLM) and 0.19 (32 a step) of its speed alone as soon as a second run started beside it.

Two remedies, both measured there:

- ``openmp_wait``: ``python -m trainer`` sets ``GOMP_SPINCOUNT=1000`` for its own process tree (libgomp's
  own value when a process has more threads than CPUs) unless the user set a wait policy: beside another
  run, LeNet-5 at 32 a step went from 0.19 to 0.54 of alone; alone it costs about 6 % at that step size.
  It must be in the environment before torch is loaded.
- ``cpu_threads: auto``: this process's share of the CPUs it may run on (the affinity mask that Slurm, a
  container or ``taskset`` set; divided among the run's processes on the node when nothing pinned them, as
  Lightning divides them for DDP), less the threads its DALI pipeline keeps busy decoding JPEGs (the digit
  sets' pipelines are idle next to the step); a step too small to split (``SMALL_STEP_FLOPS``) gets one
  thread, nearly as fast alone (0.81-0.90 of two at LeNet-5's 32 a step) and 2-6x as fast beside another run.
  An integer sets the number; ``OMP_NUM_THREADS`` in the environment is kept as the user's choice.
"""

import os

# On 2 cores, LeNet-5 on MNIST through the trainer (docs/speed.md): at 62 MFLOPs a step (32 images) one thread
# trains at 0.90 of two alone and 2.1x as fast beside another run; at 124 MFLOPs (64 images) one is at 0.72 of
# two alone. The line lies between. (It lay at 30 MFLOPs while Python's collector still walked the libraries'
# objects during training: the Python side of a step was slower then, and two threads helped more.)
SMALL_STEP_FLOPS = 90e6

SPIN_COUNT = "1000"  # libgomp's GOMP_SPINCOUNT for a process with more threads than CPUs

# set beside OMP_NUM_THREADS when the trainer chose it for its processes (not the user)
CHOSEN_HERE = "CONVNET_OMP_NUM_THREADS_CHOSEN"


def openmp_wait() -> None:
    """A short OpenMP spin before a waiting thread sleeps, unless the user chose a wait policy. Before torch is
    imported: libgomp reads it once, when it is loaded."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def choose(setting, processes_on_node: int, dali_busy: int, flops_per_step: float | None) -> tuple[int, str]:
    """The number of torch threads for this process, and how it was chosen (for the opening block).

    Args:
        setting: ``cpu_threads``: ``auto`` or a number.
        processes_on_node: the run's processes on this node.
        dali_busy: the DALI threads of this process that decode JPEGs (0 for the digit sets).
        flops_per_step: this process's training FLOPs a step; None where that does not decide (a GPU run).
    """
    from data_pipelines.sharding import cpu_share

    if setting not in (None, "auto"):
        return max(1, int(setting)), f"cpu_threads={setting}"
    if "OMP_NUM_THREADS" in os.environ and not os.environ.get(CHOSEN_HERE):
        return max(1, int(os.environ["OMP_NUM_THREADS"])), "OMP_NUM_THREADS from the environment"
    share, how = cpu_share(processes_on_node)
    if flops_per_step is not None and flops_per_step < SMALL_STEP_FLOPS:
        return 1, f"{how}; a step of {flops_per_step / 1e6:.0f} MFLOPs runs fastest on one"
    if dali_busy:
        return max(1, share - dali_busy), f"{how}, less DALI's {dali_busy} decoding"
    return share, how


def for_run(cfg, trainer) -> tuple[int, str]:
    """``choose`` for a run's config and its (built, not yet started) Lightning Trainer."""
    from pytorch_lightning.accelerators import CPUAccelerator

    from data_pipelines.protocols import DIGIT_PRESETS
    from data_pipelines.sharding import dali_threads
    from models.summary import training_flops

    processes = trainer.num_devices  # the run's processes on this node
    jpegs = "num_workers" in cfg.data and cfg.data.get("preset") not in DIGIT_PRESETS
    dali = dali_threads(cfg.data.num_workers, processes)[0] if jpegs else 0
    flops = None
    if isinstance(trainer.accelerator, CPUAccelerator) and cfg.get("cpu_threads", "auto") in (None, "auto"):
        # a process of the split holds half of every layer for twice the images: the same FLOPs a process
        per_image = training_flops(cfg.model.model_name, cfg.data.num_classes, cfg.model.in_channels,
                                   cfg.model.input_size)
        flops = per_image * cfg.data.batch_size / trainer.world_size
    return choose(cfg.get("cpu_threads", "auto"), processes, dali, flops)


def apply(threads: int) -> None:
    """Sets torch's threads, and ``OMP_NUM_THREADS`` for the processes this one starts (Lightning's DDP launcher
    keeps a value that is set rather than dividing the cores again; each process chooses the same). The user's
    own ``OMP_NUM_THREADS``, when that is the number, stays theirs."""
    import torch

    torch.set_num_threads(threads)
    if os.environ.get("OMP_NUM_THREADS") != str(threads) or os.environ.get(CHOSEN_HERE):
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ[CHOSEN_HERE] = "1"
