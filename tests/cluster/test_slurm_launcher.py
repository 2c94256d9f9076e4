"""The Slurm sweep launcher's plan of a point's job (hydra_plugins/convnet_classics); the launcher itself runs on the
real local Slurm in tests/cluster/test_slurm_jobs.py."""

import pytest

from helpers import make_cfg
from hydra_plugins.convnet_classics.slurm_launcher import SweepPointError, point_job


@pytest.mark.parametrize("overrides, gpus, resources, extra", [
    (["strategy=ddp", "trainer.devices=2"], 0, (2, 1, 0), ["trainer.devices=2", "trainer.num_nodes=1"]),
    (["strategy=ddp", "trainer.devices=8", "trainer.num_nodes=2"], 8, (8, 2, 8),
     ["trainer.devices=8", "trainer.num_nodes=2", "trainer.accelerator=gpu"]),
    (["strategy=ddp"], 4, (4, 1, 4), ["trainer.devices=4", "trainer.num_nodes=1", "trainer.accelerator=gpu"]),
    (["model=alexnet", "strategy=two_gpu_split", "trainer.devices=4"], 8, (4, 1, 4),
     ["trainer.devices=4", "trainer.num_nodes=1", "trainer.accelerator=gpu"]),
    (["strategy=single"], 8, (1, 1, 1), ["trainer.devices=1", "trainer.num_nodes=1", "trainer.accelerator=gpu"]),
    (["strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"], 8, (2, 1, 0),
     ["trainer.devices=2", "trainer.num_nodes=1"]),  # a point that trains on the CPU asks for no GPU
])
def test_a_points_job_follows_its_strategy(tmp_path, digits_cache, overrides, gpus, resources, extra):
    point = make_cfg(tmp_path, digits_cache, "trainer.accelerator=auto", *overrides)  # the default, as a user has it
    planned, added = point_job(point, gpus_per_node=gpus)
    assert (planned["tasks_per_node"], planned["nodes"], planned["gpus_per_node"]) == resources
    assert added == extra


@pytest.mark.parametrize("overrides, gpus, message", [
    (["strategy=single", "trainer.devices=2"], 8, "trainer.devices=2 is not allowed with strategy=single, which "
                                                  "runs one process on one device: for several, use strategy=ddp"),
    (["strategy=ddp"], 0, "trainer.devices=auto on a partition without GPUs (hydra.launcher.gpus_per_node=0): "
                          "set trainer.devices=N"),
    (["model=alexnet", "strategy=two_gpu_split", "trainer.devices=3"], 8, "needs an even number of processes per node"),
])
def test_a_point_that_cannot_be_a_job_is_named(tmp_path, digits_cache, overrides, gpus, message):
    # ValueError: Hydra's plugin discovery re-executes the module, so its classes are not the ones imported here
    with pytest.raises(ValueError) as refused:
        point_job(make_cfg(tmp_path, digits_cache, *overrides), gpus_per_node=gpus)
    assert type(refused.value).__name__ == SweepPointError.__name__ and message in str(refused.value)
