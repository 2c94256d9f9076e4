"""torch's CPU threads for each training process: chosen for the CPUs the process really has, and fewer while
other processes keep those CPUs busy, so that runs sharing a machine do not stall each other.

torch starts as many intra-op (OpenMP) threads as the machine has cores, whatever else runs there, and
libgomp's waiting threads spin (300,000 rounds) before they sleep. Two training processes on one machine
then ask for twice its cores, and a thread spins on a core while the sibling it waits for is not scheduled: a
step made of many small operations pays a scheduler time slice per operation. Measured on 2 cores with
``python -m trainer.bench --beside 2`` (docs/speed.md, "CPU threads"): LeNet-5 trained at 0.14 (4 images a step,
SDLM) and 0.19 (32 a step) of its speed alone as soon as a second run started beside it.

``cpu_threads: auto``: this process's share of the CPUs it may run on (the affinity mask that Slurm, a container
or ``taskset`` set; divided among the run's processes on the node when nothing pinned them, as Lightning divides
them for DDP), less the threads its DALI pipeline keeps busy decoding JPEGs (the digit sets' pipelines are idle
next to the step). A CPU run of one process on its node then gives threads up while other processes keep its CPUs
busy and takes them back when they stop (``shared_cpus.py``): alone, two threads and libgomp's own spin are the
fastest at every LeNet-5 step size measured; beside another run, one thread. An integer sets the number;
``OMP_NUM_THREADS`` in the environment is kept as the user's choice.
"""

import os
from typing import NamedTuple

# set beside OMP_NUM_THREADS when the trainer chose it for its processes (not the user)
CHOSEN_HERE = "CONVNET_OMP_NUM_THREADS_CHOSEN"


class Choice(NamedTuple):
    threads: int
    how: str  # for the opening block
    shared_cpus: bool  # fewer while other processes keep the CPUs busy (shared_cpus.py)


def choose(setting, processes_on_node: int, dali_busy: int, cpu_run: bool) -> Choice:
    """The number of torch threads for this process, how it was chosen, and whether it follows the CPUs' load.

    Args:
        setting: ``cpu_threads``: ``auto`` or a number.
        processes_on_node: the run's processes on this node.
        dali_busy: the DALI threads of this process that decode JPEGs (0 for the digit sets).
        cpu_run: whether the run trains on the CPU (a GPU run's threads do not follow the load).
    """
    from data_pipelines.sharding import cpu_share

    from .cpu_load import readable

    if setting not in (None, "auto"):
        return Choice(max(1, int(setting)), f"cpu_threads={setting}", False)
    if "OMP_NUM_THREADS" in os.environ and not os.environ.get(CHOSEN_HERE):
        return Choice(max(1, int(os.environ["OMP_NUM_THREADS"])), "OMP_NUM_THREADS from the environment", False)
    share, how = cpu_share(processes_on_node)
    threads = max(1, share - dali_busy)
    how += f", less DALI's {dali_busy} decoding" if dali_busy else ""
    # A CPU run's only process on the node: under DDP the node's processes divide the CPUs already, and the
    # launcher's ranks are its children, so each rank would see the run's other ranks as other processes.
    follows = cpu_run and processes_on_node == 1 and threads > 1 and readable()
    return Choice(threads, how + ("; fewer while other processes keep them busy" if follows else ""), follows)


def for_run(cfg, trainer) -> Choice:
    """``choose`` for a run's config and its (built, not yet started) Lightning Trainer."""
    from pytorch_lightning.accelerators import CPUAccelerator

    from data_pipelines.protocols import DIGIT_PRESETS
    from data_pipelines.sharding import dali_threads

    processes = trainer.num_devices  # the run's processes on this node
    jpegs = "num_workers" in cfg.data and cfg.data.get("preset") not in DIGIT_PRESETS
    dali = dali_threads(cfg.data.num_workers, processes)[0] if jpegs else 0
    return choose(cfg.get("cpu_threads", "auto"), processes, dali, isinstance(trainer.accelerator, CPUAccelerator))


def take(cfg, trainer) -> Choice:
    """Chooses the run's threads (``for_run``), sets them (``apply``), and adds the callback that gives them up while
    other processes keep the CPUs busy, where the choice follows the load. Before ``trainer.fit``."""
    from .shared_cpus import SharedCpus

    choice = for_run(cfg, trainer)
    apply(choice.threads)
    if choice.shared_cpus:
        trainer.callbacks.append(SharedCpus(choice.threads))
    return choice


def apply(threads: int) -> None:
    """Sets torch's threads, and ``OMP_NUM_THREADS`` for the processes this one starts (Lightning's DDP launcher
    keeps a value that is set rather than dividing the cores again; each process chooses the same). The user's
    own ``OMP_NUM_THREADS``, when that is the number, stays theirs."""
    import torch

    torch.set_num_threads(threads)
    if os.environ.get("OMP_NUM_THREADS") != str(threads) or os.environ.get(CHOSEN_HERE):
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ[CHOSEN_HERE] = "1"
