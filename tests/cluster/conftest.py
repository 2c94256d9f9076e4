"""The local Slurm clusters, as session fixtures (tests/cluster/local_slurm.py starts them)."""

import pytest

from local_slurm import local_slurm


@pytest.fixture(scope="session")
def slurm():
    """One node with this machine's CPUs."""
    yield from local_slurm()


@pytest.fixture(scope="session")
def slurm_two_nodes():
    """Two Slurm nodes on this machine (two slurmd daemons), a cluster of its own."""
    yield from local_slurm("/tmp/convnet-slurm-two-nodes", "2")
