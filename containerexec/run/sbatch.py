"""Slurm's commands and the sbatch script of an array: what the scheduler (run/slurm.py)
submits and polls with. The script half is pure, so golden files pin it; the client
runs sbatch, squeue, sacct, scontrol and scancel as subprocesses.
"""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from containerexec.errors import RunError
from containerexec.model.spec import ModuleSpec

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default
TIME_MARGIN_S = 120  # pulling the image and committing outputs, on top of the attempts


class SlurmError(RunError):
    """A Slurm command failed or is missing; names the command and what it said."""

    def __init__(self, command: Sequence[str], message: str) -> None:
        self.command = list(command)
        self.message = message
        super().__init__(f"{shlex.join(self.command)}: {message}")


class JobStillActive(RunError):
    """A resume asked for while an earlier Slurm job of the run still has tasks in Slurm:
    its tasks and the new ones would run the same shards at once. Exit 2; nothing is
    cancelled or submitted."""

    exit_code = 2

    def __init__(self, run_id: str, job_id: str, states: Sequence[str]) -> None:
        self.run_id = run_id
        self.job_id = job_id
        self.states = list(states)
        super().__init__(
            f"run {run_id} cannot resume: its Slurm job {job_id} is still "
            f"{'/'.join(self.states)}; nothing was submitted. Wait for it to end "
            f"(containerexec runs show {run_id}), or cancel it (scancel {job_id}), then resume"
        )


@dataclass(frozen=True)
class SlurmSettings:
    """Where and how arrays are submitted: flags, containerexec.toml or CONTAINEREXEC_SLURM_*."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None  # sbatch --time; default: the module's timeout plus a margin
    options: tuple[str, ...] = ()  # more sbatch options, verbatim
    python: str = sys.executable  # on the nodes; the same path by default (a shared venv)
    poll_s: float = 1.0
    max_resubmits: int = 3  # of shards lost to NODE_FAIL / PREEMPTED
    last_words_s: float = 30.0  # a lost task's worker may still write its record (KillWait)


# -- the script (pure) -------------------------------------------------------------------


def array_indices(indices: Sequence[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (sbatch --array syntax)."""
    parts: list[str] = []
    ordered = sorted(set(indices))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def time_limit(spec: ModuleSpec, values: int = 1) -> str | None:
    """sbatch --time for a task of `values` shards: each one's every attempt's timeout and
    backoffs, and a margin."""
    timeout = spec.resources.timeout
    if timeout is None:
        return None
    policy = spec.retries
    backoffs = sum(
        min(policy.backoff.initial * policy.backoff.factor**k, policy.backoff.max)
        for k in range(policy.max_attempts - 1)
    )
    per_value = timeout * policy.max_attempts + backoffs
    minutes = math.ceil((per_value * max(1, values) + TIME_MARGIN_S) / 60)
    return f"{minutes}"


def render_script(
    *,
    run_id: str,
    module: str,
    run_dir: Path,
    indices: Sequence[int],
    throttle: int,
    spec: ModuleSpec,
    settings: SlurmSettings,
    batches: Path | None = None,
    task_size: int = 1,
) -> str:
    """The sbatch script of one array over `indices`: pure, so golden files pin it.

    With `batches` (a packed run), the indices are batch numbers and task I runs the
    shards listed at I in that file, up to `task_size` of them."""
    res = spec.resources
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=cx-{module}",
        f"#SBATCH --array={array_indices(indices)}%{max(1, throttle)}",
        f"#SBATCH --output={run_dir}/slurm/%A_%a.out",
        "#SBATCH --no-requeue",  # containerexec resubmits lost shards itself, uncounted
        f"#SBATCH --cpus-per-task={math.ceil(res.cpus) if res.cpus else 1}",
    ]
    if res.memory:
        lines.append(f"#SBATCH --mem={math.ceil(res.memory / (1 << 20))}M")
    limit = settings.time or time_limit(spec, task_size if batches else 1)
    if limit:
        lines.append(f"#SBATCH --time={limit}")
    if settings.partition:
        lines.append(f"#SBATCH --partition={settings.partition}")
    if settings.account:
        lines.append(f"#SBATCH --account={settings.account}")
    lines += [f"#SBATCH {opt}" for opt in settings.options]
    worker = [settings.python, "-m", "containerexec", "worker", str(run_dir)]
    if batches is None:
        what, task = "one task per shard", '--shard "$SLURM_ARRAY_TASK_ID"'
    else:
        what = f"one task per batch (up to {task_size} shards, one container)"
        worker += ["--batches", str(batches)]
        task = '--batch "$SLURM_ARRAY_TASK_ID"'
    lines += [
        f"# containerexec run {run_id}: {what}.",
        "# The run folder must be on a filesystem every node shares. exec, so Slurm's",
        "# SIGTERM reaches the worker, which stops and removes its container.",
        f"exec {shlex.join(worker)} {task}",
        "",
    ]
    return "\n".join(lines)


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
                argv, f"'{argv[0]}' is not installed here; submit from a Slurm login node"
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
