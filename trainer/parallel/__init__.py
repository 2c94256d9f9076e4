"""Running on several devices and nodes: the two-GPU AlexNet split (``split_strategy.py``), the devices torch can
use (``devices.py``), the GPU fast path (``fast_path.py``), a lost peer (``peers.py``, ``lost_peer.py``) and
Slurm's preemption (``slurm_preemption.py``). It may import ``trainer.run`` (the step arithmetic, the
checkpoints); only the entry points and the tools import it.
"""
