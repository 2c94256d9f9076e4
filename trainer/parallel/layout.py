"""The processes of a run and what each strategy allows of them, without torch (the config check, before anything
starts, and the Slurm sweep launcher, before a job is submitted, ask it): a split pair is one data-parallel
replica, ``single`` is one process, a split needs AlexNet and pairs."""

PROCESSES_PER_REPLICA = {"two_gpu_split": 2}  # the split's two towers hold one model: one replica per pair


def replicas(strategy: str | None, devices: int, nodes: int) -> int:
    """The data-parallel replicas of ``devices`` processes on each of ``nodes`` nodes."""
    return devices * nodes // PROCESSES_PER_REPLICA.get(str(strategy), 1)


def split_refusal(strategy: str | None, model: str | None, devices) -> str | None:
    """Why ``strategy=two_gpu_split`` cannot run this model or this number of processes per node, or None."""
    if strategy != "two_gpu_split":
        return None
    if model != "alexnet":
        return (f"strategy=two_gpu_split splits the 2012 two-GPU AlexNet between two processes, but model={model}; "
                f"use model=alexnet, or strategy=ddp to train {model} on several GPUs")
    if not _int(devices) or devices < 2 or devices % 2:
        return (f"strategy=two_gpu_split needs an even number of processes per node (each pair holds the two towers "
                f"of one AlexNet), but trainer.devices={devices}; use trainer.devices=2 (one pair, as in the paper), "
                f"4 or 8")
    return None


def several_under_single(strategy: str | None, devices, nodes) -> str | None:
    """Why ``strategy=single`` cannot run these devices and nodes (it is one process on one device), or None.
    One rule for a run and for a sweep's Slurm job (``hydra_plugins/convnet_classics/slurm_launcher.py``)."""
    if strategy != "single" or (devices in (1, "1") and nodes in (1, "1")):
        return None
    many = f"trainer.devices={devices}" + (f" trainer.num_nodes={nodes}" if nodes not in (1, "1") else "")
    return (f"{many} is not allowed with strategy=single, which runs one process on one device: for several, use "
            f"strategy=ddp {many}")


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
