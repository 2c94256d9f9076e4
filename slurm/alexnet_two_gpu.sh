#!/bin/bash
# AlexNet as trained in 2012: the two-GPU split on a node with 2 GPUs (strategy=two_gpu_split).
#   sbatch slurm/alexnet_two_gpu.sh                                  # one pair, the paper's set-up
#   sbatch --ntasks-per-node=8 --gpus-per-node=8 slurm/alexnet_two_gpu.sh   # 4 pairs, data parallel
#   sbatch slurm/alexnet_two_gpu.sh trainer.max_epochs=1             # extra args: Hydra overrides
# Preemption and the run folder (outputs/alexnet/<job id>) as in slurm/resnet152.sh.
#SBATCH --job-name=alexnet-2gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2          # one task per GPU: one tower each (even: pairs never straddle nodes)
#SBATCH --gpus-per-node=2
#SBATCH --cpus-per-task=8
#SBATCH --time=120:00:00             # the paper: 5-6 days on two GTX 580s
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --open-mode=append
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
srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" "$PYTHON" -m trainer experiment=alexnet_2012 strategy=two_gpu_split \
    trainer.accelerator=gpu trainer.devices="${SLURM_NTASKS_PER_NODE}" trainer.num_nodes="${SLURM_JOB_NUM_NODES}" "$@"
