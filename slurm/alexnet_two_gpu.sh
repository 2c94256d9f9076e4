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
PYTHON=${PYTHON:-.venv/bin/python}

srun --kill-on-bad-exit=1 "$PYTHON" -m trainer experiment=alexnet_2012 strategy=two_gpu_split \
    trainer.devices="${SLURM_NTASKS_PER_NODE}" trainer.num_nodes="${SLURM_JOB_NUM_NODES}" \
    data.num_workers="$(( ${SLURM_CPUS_PER_TASK:-2} > 1 ? ${SLURM_CPUS_PER_TASK:-2} - 1 : 1 ))" "$@"
