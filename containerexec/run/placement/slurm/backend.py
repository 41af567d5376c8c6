"""Slurm as an ArrayBackend: a run's shards as one Slurm job array.

Plain sbatch with a rendered script, not submitit: each array task runs
`python -m containerexec worker RUN_DIR --shard $SLURM_ARRAY_TASK_ID`, the same
code path as a local shard (Executor.work -> Run.run_shard), and needs only the
run folder on a filesystem the nodes share. A packed run (run/packing/planner.py) makes
one task per batch instead: task I runs the shards listed at I in
RUN_DIR/slurm/batches-N.json in one container (Executor.work_batch). Nothing is
pickled, so the nodes need containerexec but not the submitter's exact Python
objects, and the script a user can read (RUN_DIR/slurm/job-N.sh) is exactly what ran.

Tasks are followed through `squeue -r -t all` (finished tasks stay listed for
MinJobAge; sacct where accounting exists). This module maps Slurm's words to the
generic follower's TaskState: lost to a node failure or a preemption (run again,
uncounted), ended by Slurm (its time limit, memory, a cancel: one attempt), back
in the queue (a requeue). The follower (placement/follower.py) does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerexec.run.placement.base import Flag, Pacing, Submission, TaskState, Where
from containerexec.run.placement.cluster import ArrayPlacement
from containerexec.run.placement.slurm.client import ACTIVE, SlurmClient
from containerexec.run.placement.slurm.script import SlurmSettings, render_script
from containerexec.run.runner import Failure

# A task back in the queue after it ran: Slurm requeued it (its node failed, or an admin).
REQUEUED = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PENDING"}
# Slurm's outcomes that are not the shard's fault: run the shard again, uncounted.
LOST = {
    "NODE_FAIL": Failure.NODE_LOST,
    "BOOT_FAIL": Failure.NODE_LOST,
    "PREEMPTED": Failure.PREEMPTED,
}
# Slurm's outcomes that are one attempt of the shard's: the worker could not record them.
# Out of time is `timeout` wherever it runs, so retries and `runs show` read it alike.
ENDED_BY_SLURM = {
    "TIMEOUT": Failure.TIMEOUT,
    "DEADLINE": Failure.TIMEOUT,
    "OUT_OF_MEMORY": Failure.OOM,
    "CANCELLED": Failure.CANCELLED,
}

FLAGS = (
    Flag("--partition", "partition", "partition", "Slurm partition (sbatch --partition)."),
    Flag("--account", "account", "account", "Slurm account (sbatch --account)."),
    Flag(
        "--time",
        "time_limit",
        "time",
        "Slurm time limit per task (default: the module's timeout + a margin).",
        metavar="TIME",
    ),
    Flag(
        "--sbatch-option",
        "sbatch_options",
        "options",
        "Any other sbatch option, verbatim, e.g. --sbatch-option=--qos=long.",
        metavar="OPT",
        multiple=True,
    ),
)
SETTINGS = ("partition", "account", "time", "options", "python")  # [slurm] keys


def task_state(word: str) -> TaskState:
    """Slurm's state of a task (squeue %T, sacct State) in the follower's words."""
    return TaskState(
        word=word,
        active=word in ACTIVE,
        running=word == "RUNNING",
        queued=word in REQUEUED,
        lost=LOST.get(word),
        ended_by=ENDED_BY_SLURM.get(word),
    )


@dataclass
class SlurmBackend:
    """sbatch an array's script, poll its tasks, scancel it."""

    settings: SlurmSettings = field(default_factory=SlurmSettings)
    client: SlurmClient = field(default_factory=SlurmClient)
    kind: str = "slurm"
    title: str = "Slurm"

    @property
    def pacing(self) -> Pacing:
        s = self.settings
        return Pacing(poll_s=s.poll_s, max_resubmits=s.max_resubmits, last_words_s=s.last_words_s)

    def submit(self, submission: Submission) -> str:
        script = submission.folder / f"job-{submission.number}.sh"
        script.write_text(
            render_script(
                run_id=submission.run_id,
                module=submission.module,
                run_dir=submission.run_dir,
                indices=submission.indices,
                throttle=submission.throttle,
                spec=submission.spec,
                settings=self.settings,
                batches=submission.batches,
                task_size=submission.task_size,
            )
        )
        return self.client.submit(script)

    def states(self, job_id: str) -> dict[int, TaskState]:
        return {task: task_state(word) for task, (word, _) in self.client.states(job_id).items()}

    def cancel(self, job_id: str, *, pending_only: bool = False) -> None:
        self.client.cancel(job_id, pending_only=pending_only)

    def max_tasks(self) -> int:
        return self.client.max_array_size()  # MaxArraySize: indices 0 to it minus 1

    def why(self, job_id: str, task: int, state: TaskState, folder: Path) -> str:
        name = f"{job_id}_{task}"
        log = folder / f"{name}.out"
        if state.word in ("TIMEOUT", "DEADLINE"):
            return (
                f"Slurm ended task {name} at its time limit ({state.word}); raise --time or "
                f"the module's resources.timeout; task log {log}"
            )
        if state.word == "OUT_OF_MEMORY":
            return f"Slurm ended task {name}: OUT_OF_MEMORY; raise resources.memory"
        if state.word == "CANCELLED":
            return f"Slurm task {name} was cancelled"
        if state.lost is not None:
            return f"Slurm: {state.word}; submitted again (not counted as a retry)"
        return (
            f"Slurm task {name} ended {state.word} without a shard record; its log {log} says "
            "why (is the run folder on a filesystem the node shares?)"
        )

    def requeued(self, job_id: str, task: int) -> str:
        return (
            f"Slurm requeued task {job_id}_{task} while this attempt ran (a node failure or "
            "scontrol requeue); not counted as a retry"
        )

    def cancel_hint(self, job_id: str) -> str:
        return f"scancel {job_id}"


def settings_from(flags: Mapping[str, Any], conf: Mapping[str, Any]) -> SlurmSettings:
    """Flags over the config file and environment (`conf`, keys as in SETTINGS)."""
    options = conf.get("options", [])
    return SlurmSettings(
        partition=flags.get("partition") or conf.get("partition"),
        account=flags.get("account") or conf.get("account"),
        time=flags.get("time_limit") or conf.get("time"),
        options=(
            *([options] if isinstance(options, str) else options),
            *flags.get("sbatch_options", ()),
        ),
        python=conf.get("python") or SlurmSettings().python,
    )


def slurm_placement(
    settings: SlurmSettings | None = None,
    client: SlurmClient | None = None,
    *,
    where: Where | None = None,
    sleep: Callable[[float], object] | None = None,
) -> ArrayPlacement:
    """A placement on Slurm: the generic follower over a SlurmBackend."""
    where = where or Where()
    backend = SlurmBackend(settings or SlurmSettings(), client or SlurmClient())
    return ArrayPlacement(
        backend=backend,
        engine=where.engine,
        push_to=where.push_to,
        detach=where.detach,
        sleep=sleep or where.sleep or time.sleep,
        notice=where.notice,
    )


def make(where: Where) -> ArrayPlacement:
    """The registry's entry point for 'slurm'."""
    return slurm_placement(settings_from(where.flags, where.conf), where=where)


def backend() -> SlurmBackend:
    """The registry's backend for a recorded Slurm run (is a job of it active? cancel it)."""
    return SlurmBackend()
