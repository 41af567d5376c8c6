"""The sbatch script of an array (pure, so golden files pin it), and the settings it is
rendered with: flags, containerexec.toml or CONTAINEREXEC_SLURM_*."""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from containerexec.model.spec import ModuleSpec
from containerexec.run.placement.base import array_indices

TIME_MARGIN_S = 120  # pulling the image and committing outputs, on top of the attempts


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
    else:  # packed, or renumbered: shard indices past the cluster's MaxArraySize
        what = (
            "one task per shard listed in the file"
            if task_size == 1
            else f"one task per batch (up to {task_size} shards, one container)"
        )
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
