"""What the trainer needs to know of how data and CPUs are split over processes, without importing DALI.

The training loop, the LightningModule and the callbacks use these; keeping them apart from the DALI
pipelines lets the run loop load (and run on in-memory batches) where DALI is not installed.
"""

import os

# The label of the entries that pad a data-parallel replica's shard to the common length (every replica must
# run the same number of steps): the loss and the metrics ignore it.
PAD_LABEL = -1


def batch_refusal(batch_size: int, replicas: int) -> str | None:
    """Why ``data.batch_size`` (the global batch) cannot be shared by ``replicas`` data-parallel replicas, or None:
    the one rule, for the config check before a run and the data module inside it."""
    if replicas and batch_size % replicas:
        return (f"data.batch_size={batch_size} is the global batch and must divide evenly over the {replicas} "
                f"data-parallel replicas; use a multiple of {replicas}")
    return None


def data_parallel_rank_and_size(trainer) -> tuple[int, int]:
    """This process's rank among the data-parallel replicas, and their number.

    Every process is a replica under DDP; under the two-GPU split a replica is a pair of processes,
    which reads one shard together. One process alone is replica 0 of 1.
    """
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    return (kwargs["rank"], kwargs["num_replicas"]) if kwargs else (0, 1)


def cpu_share(processes_on_node: int = 1) -> tuple[int, str]:
    """The CPUs this process may use, and how they were counted (for the start-up line): those of its affinity
    mask (``os.sched_getaffinity``: what Slurm's binding, a container or ``taskset`` leave it, not what the
    machine has); when it may use every CPU of the machine, nothing pinned it, and the node's processes share
    them, so each takes its share (Lightning's rule for DDP)."""
    cpus = len(os.sched_getaffinity(0))
    shared = processes_on_node > 1 and cpus == os.cpu_count()
    how = f"{cpus} CPUs usable" + (f", shared by {processes_on_node} processes" if shared else " by this process")
    return max(1, cpus // processes_on_node if shared else cpus), how


def dali_threads(num_workers: int | str, processes_on_node: int = 1) -> tuple[int, str]:
    """DALI's CPU threads for this process, and how they were chosen (for the start-up line).

    ``auto``: this process's share of the CPUs (``cpu_share``), less one for the training loop itself.
    """
    if num_workers != "auto":
        return max(1, int(num_workers)), f"data.num_workers={num_workers}"  # DALI always has a thread of its own
    share, how = cpu_share(processes_on_node)
    return max(1, share - 1), how
