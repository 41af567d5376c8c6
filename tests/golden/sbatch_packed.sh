#!/bin/bash
#SBATCH --job-name=cx-wc
#SBATCH --array=0-2%2
#SBATCH --output=/shared/runs/wc-3/slurm/%A_%a.out
#SBATCH --no-requeue
#SBATCH --cpus-per-task=1
#SBATCH --time=6
# containerexec run wc-3: one task per batch (up to 4 shards, one container).
# The run folder must be on a filesystem every node shares. exec, so Slurm's
# SIGTERM reaches the worker, which stops and removes its container.
exec /opt/venv/bin/python -m containerexec worker /shared/runs/wc-3 --batches /shared/runs/wc-3/slurm/batches-0.json --batch "$SLURM_ARRAY_TASK_ID"
