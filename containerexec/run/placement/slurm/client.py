"""Slurm's commands as subprocesses: sbatch, squeue, sacct, scontrol and scancel, the only
place containerexec runs them (SLURM_CONF from the environment)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from containerexec.run.placement.base import PlacementError

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default


class SlurmError(PlacementError):
    """A Slurm command failed or is missing; names the command and what it said."""

    def __init__(self, command: Sequence[str], message: str, *, missing: bool = False) -> None:
        super().__init__("slurm", command, message, missing=missing)


# -- the Slurm commands ------------------------------------------------------------------


@dataclass
class SlurmClient:
    """sbatch, squeue, sacct and scancel, as subprocesses (SLURM_CONF from the environment)."""

    timeout_s: float = 30.0
    env: dict[str, str] | None = None

    def _call(self, argv: list[str], *, check: bool = True) -> str:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env=self.env,
                check=False,
            )
        except FileNotFoundError:
            raise SlurmError(
                argv,
                f"'{argv[0]}' is not installed here; submit from a Slurm login node",
                missing=True,
            ) from None
        except subprocess.TimeoutExpired:
            raise SlurmError(
                argv, f"no answer within {self.timeout_s:g} s; is slurmctld up? (try sinfo)"
            ) from None
        if check and done.returncode != 0:
            raise SlurmError(argv, done.stderr.strip() or f"exit status {done.returncode}")
        return done.stdout

    def submit(self, script: Path) -> str:
        """sbatch the script; returns the job id."""
        out = self._call(["sbatch", "--parsable", str(script)])
        return out.strip().split(";")[0]

    def states(self, job_id: str) -> dict[int, tuple[str, str]]:
        """Array task index -> (state, reason), pending tasks included; sacct when squeue
        has forgotten the job and accounting exists."""
        out = self._call(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%K|%T|%r"])
        states = parse_states(out)
        if states:
            return states
        acct = self._call(
            ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,Reason"], check=False
        )
        return {
            int(jid.split("_")[1]): (state.split()[0], reason)
            for jid, state, reason in (line.split("|")[:3] for line in acct.splitlines() if line)
            if "_" in jid and jid.split("_")[1].isdigit()
        }

    def max_array_size(self) -> int:
        """The cluster's MaxArraySize: array task indices must be below it (default 1001)."""
        out = self._call(["scontrol", "show", "config"], check=False)
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "MaxArraySize" and value.strip().isdigit():
                return int(value.strip())
        return DEFAULT_MAX_ARRAY_SIZE

    def cancel(self, job_id: str, *, pending_only: bool = False) -> None:
        argv = ["scancel", *(["--state=PENDING"] if pending_only else []), job_id]
        self._call(argv, check=False)


def parse_states(out: str) -> dict[int, tuple[str, str]]:
    """`squeue -r -o %K|%T|%r` lines -> index -> (state, reason)."""
    states: dict[int, tuple[str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0].isdigit():
            states[int(parts[0])] = (parts[1], parts[2] if len(parts) > 2 else "")
    return states
