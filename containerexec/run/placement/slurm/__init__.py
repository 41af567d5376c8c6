"""Slurm, one placement backend: its commands (client.py), its sbatch script (script.py),
and its states and messages for the generic follower (backend.py)."""

from containerexec.run.placement.slurm.backend import (
    FLAGS,
    SETTINGS,
    SlurmBackend,
    backend,
    make,
    slurm_placement,
)

__all__ = ["FLAGS", "SETTINGS", "SlurmBackend", "backend", "make", "slurm_placement"]
