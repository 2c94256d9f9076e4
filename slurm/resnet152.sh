#!/bin/bash
# ResNet-152 on ImageNet (He et al. 2015) with DDP: one task per GPU, N nodes x G GPUs.
#   sbatch slurm/resnet152.sh                                        # the paper's recipe, as below
#   sbatch slurm/resnet152.sh trainer.max_epochs=1 data.root=/datasets/imagenet   # extra args: Hydra overrides
#   sbatch --nodes=4 slurm/resnet152.sh                              # sbatch's options override these lines
# Preemption: USR2 arrives 120 s before the time limit (or from the scheduler); the job then saves a
# checkpoint and requeues itself, and the requeued job resumes from it in the same run folder
# (outputs/resnet152/<job id>), continuing the same W&B run. Compute nodes without internet keep W&B
# offline: sync from the login node with `wandb sync outputs/resnet152/<job id>/wandb/offline-run-*`.
#SBATCH --job-name=resnet152
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8          # = GPUs per node: Lightning expects one task per device
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12           # DALI threads (data.num_workers=auto: 11) + the training process
#SBATCH --time=72:00:00
#SBATCH --requeue
#SBATCH --signal=USR2@120            # not USR1, which NCCL may use; no B: (the tasks must get it, not the shell)
#SBATCH --open-mode=append           # a requeued job appends to the same log
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
# The Python: PYTHON when set; else the environment `make install` made in the submit folder; else the
# `python` of the environment sbatch exported (an activated conda env or venv, the Docker image).
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python || command -v python3); fi
fi
echo "python: $PYTHON ($("$PYTHON" -c 'import sys; print(sys.prefix)'))"

# Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch: without it each task may be
# pinned to one CPU, and DALI's threads (data.num_workers=auto: the CPUs the task may use, less one)
# starve the GPU. Devices and nodes come from the allocation, so sbatch --nodes / --ntasks-per-node
# change them; the GPUs are asked for explicitly (no silent CPU fallback: trainer/parallel/devices.py).
srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" "$PYTHON" -m trainer experiment=resnet152_2015 strategy=ddp \
    trainer.accelerator=gpu trainer.devices="${SLURM_NTASKS_PER_NODE}" trainer.num_nodes="${SLURM_JOB_NUM_NODES}" "$@"
