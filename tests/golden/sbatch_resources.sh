#!/bin/bash
#SBATCH --job-name=cx-wc
#SBATCH --array=4%1
#SBATCH --output=/shared/runs/wc-2/slurm/%A_%a.out
#SBATCH --no-requeue
#SBATCH --cpus-per-task=2
#SBATCH --mem=300M
#SBATCH --time=23
#SBATCH --partition=gpu
#SBATCH --account=lab
#SBATCH --qos=long
# containerexec run wc-2: one task per shard.
# The run folder must be on a filesystem every node shares. exec, so Slurm's
# SIGTERM reaches the worker, which stops and removes its container.
exec /opt/venv/bin/python -m containerexec worker /shared/runs/wc-2 --shard "$SLURM_ARRAY_TASK_ID"
