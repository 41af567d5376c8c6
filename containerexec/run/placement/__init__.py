"""Where a run's tasks run: base.py (the seam and the registry), local.py, cluster.py and
follower.py (any job-array backend), and one folder per cluster (slurm/)."""

from containerexec.run.placement.base import (
    ArrayBackend,
    Placement,
    backend,
    check_resumable,
    flags,
    make,
    names,
    settings,
)

__all__ = [
    "ArrayBackend",
    "Placement",
    "backend",
    "check_resumable",
    "flags",
    "make",
    "names",
    "settings",
]
