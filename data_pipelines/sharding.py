"""What the trainer needs to know of how data is split over processes, without importing DALI.

The training loop, the LightningModule and the callbacks use these; keeping them apart from the DALI
pipelines lets the run loop load (and run on in-memory batches) where DALI is not installed.
"""

# The label of the entries that pad a data-parallel replica's shard to the common length (every replica must
# run the same number of steps): the loss and the metrics ignore it.
PAD_LABEL = -1


def data_parallel_rank_and_size(trainer) -> tuple[int, int]:
    """This process's rank among the data-parallel replicas, and their number.

    Every process is a replica under DDP; under the two-GPU split a replica is a pair of processes,
    which reads one shard together. One process alone is replica 0 of 1.
    """
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    return (kwargs["rank"], kwargs["num_replicas"]) if kwargs else (0, 1)
