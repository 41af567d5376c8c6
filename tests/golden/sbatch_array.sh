#!/bin/bash
#SBATCH --job-name=cx-wc
#SBATCH --array=0-3,5,7%3
#SBATCH --output=/shared/runs/wc-1/slurm/%A_%a.out
#SBATCH --no-requeue
#SBATCH --cpus-per-task=1
# containerexec run wc-1: one task per shard.
# The run folder must be on a filesystem every node shares. exec, so Slurm's
# SIGTERM reaches the worker, which stops and removes its container.
exec /opt/venv/bin/python -m containerexec worker /shared/runs/wc-1 --shard "$SLURM_ARRAY_TASK_ID"
