"""Running on several devices and nodes: the two-GPU AlexNet split (``split_strategy.py``), the devices torch can
use (``devices.py``), the GPU fast path (``fast_path.py``), a lost peer (``peers.py``, ``lost_peer.py``),
Slurm's preemption (``slurm_preemption.py``) and torch's CPU threads on shared CPUs (``cpu_threads.py``,
``shared_cpus.py``, ``cpu_load.py``). It may import ``trainer.run`` (the step arithmetic, the checkpoints); only the
entry points and the tools import it.
"""
