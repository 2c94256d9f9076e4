"""``python -m trainer -m hydra/launcher=slurm ...``: a sweep as one Slurm job per point, each job a normal
multi-process run, as ``sbatch slurm/*.sh`` starts one (configured in ``conf/hydra/launcher/slurm.yaml``).

Hydra's submitit launcher gives every point the same resources. Here each point's own config decides its
job: tasks per node = the point's processes per node (``trainer.devices``; 1 under ``strategy=single``),
nodes = ``trainer.num_nodes``, a GPU per task on a GPU partition. The point's command line gets those
numbers as overrides (Lightning checks them against Slurm's), and ``trainer.accelerator=gpu`` when the
job has GPUs (no silent CPU fallback). ``srun`` is given the job's ``--cpus-per-task`` (Slurm >= 22.05 does
not pass it on). Preemption works as for the scripts: USR2 before the time limit, our callback writes the
checkpoint and requeues the job, and the requeued job runs the same point again in the same folder,
resuming from it (trainer/parallel/slurm_preemption.py).

The module is imported by Hydra's plugin discovery on every start: it imports only Hydra, the submitit
launcher (which imports submitit lazily) and the trainer's config check (omegaconf only).
"""

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from trainer.parallel.layout import several_under_single, split_refusal

log = logging.getLogger(__name__)


class SweepPointError(ValueError):
    """A sweep point whose job cannot be planned (the message says which setting to change)."""


def point_job(point: DictConfig, gpus_per_node: int) -> tuple[dict[str, Any], list[str]]:
    """The Slurm resources of one sweep point, and the overrides that make its run match them.

    ``gpus_per_node``: the launcher's; 0 on a CPU partition (then each task is a CPU process). A point that
    trains on the CPU (``trainer.accelerator=cpu``) asks for no GPU, whatever the partition has.
    """
    devices, nodes = point.trainer.devices, point.trainer.num_nodes
    if point.trainer.accelerator == "cpu":
        gpus_per_node = 0
    if point.strategy.name == "single":
        refusal = several_under_single("single", devices, nodes)
        if refusal:
            raise SweepPointError(refusal)
        devices = 1
    elif devices == "auto":
        if not gpus_per_node:
            raise SweepPointError(f"strategy={point.strategy.name} with trainer.devices=auto on a partition without "
                                  "GPUs (hydra.launcher.gpus_per_node=0): set trainer.devices=N, the processes per "
                                  "node")
        devices = gpus_per_node
    devices = int(devices)
    if devices < 1:
        raise SweepPointError(f"trainer.devices={devices} under strategy={point.strategy.name}: processes per node "
                              "must be at least 1")
    if refusal := split_refusal(point.strategy.name, point.model.model_name, devices):  # the run's own rule
        raise SweepPointError(refusal)
    resources = {"tasks_per_node": devices, "nodes": int(nodes), "gpus_per_node": devices if gpus_per_node else 0}
    overrides = [f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"]
    if gpus_per_node and point.trainer.accelerator == "auto":
        overrides.append("trainer.accelerator=gpu")
    return resources, overrides


class SlurmSweepLauncher(SlurmLauncher):
    """One Slurm job per sweep point, its resources from the point's own config (``point_job``)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Plans every point, then submits them; a point that cannot be a job, or that sbatch refuses, stops the
        sweep with one line naming the cause (exit status 2)."""
        try:
            return self._launch(job_overrides, initial_job_idx)
        except SweepPointError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def _launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit  # lazily, as Hydra's submitit launcher does: plugin discovery stays fast

        assert self.config is not None and self.hydra_context is not None
        params = dict(self.params)
        gpus_per_node = int(params.pop("gpus_per_node") or 0)
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()
                                      if k not in ("tasks_per_node", "nodes")})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # resolved now: every job (and requeue) writes here
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Slurm sweep: {len(job_overrides)} job(s), output in {sweep_dir}")

        planned = []  # every point is checked before the first job is submitted
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            point = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                resources, extra = point_job(point, gpus_per_node)
            except SweepPointError as e:
                raise SweepPointError(f"sweep point #{idx} ({' '.join(filter_overrides(overrides))}): {e}") from None
            planned.append((idx, [*overrides, *(o for o in extra if o not in overrides)], resources))
        jobs = []
        for idx, overrides, resources in planned:
            executor.update_parameters(**resources, slurm_srun_args=[
                f"--cpus-per-task={params.get('cpus_per_task') or 1}", "--kill-on-bad-exit=1"])
            try:
                job = executor.submit(self, overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                      Singleton.get_state())
            except Exception as e:  # sbatch refused it: its own words, not submitit's traceback
                cause = next((line.split("error:", 1)[1].strip() for line in str(e).splitlines() if "error:" in line),
                             str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
                raise SweepPointError(f"sbatch refused sweep point #{idx} ({' '.join(filter_overrides(overrides))}), "
                                      f"{resources['gpus_per_node']} GPU(s) per node asked for: {cause}; "
                                      f"{len(jobs)} job(s) were submitted before it") from None
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}  ->  Slurm job {job.job_id} "
                     f"({resources['nodes']} node(s) x {resources['tasks_per_node']} task(s), "
                     f"{resources['gpus_per_node']} GPU(s) per node)")
            jobs.append(job)
        return [job.results()[0] for job in jobs]  # the result of each job's rank 0
