"""Where a run's tasks run: the Placement seam, the ArrayBackend a cluster implements, and
the registry from a name ("local", "slurm") to a placement.

A placement gets a Run and the shards still to do, and returns when every one has
ended or the run stops (cancelled, or too many shards failed). Each shard goes
through `Run.run_shard`, here or in another process: a cluster placement submits
an array whose tasks call `containerexec worker RUN_DIR --shard K` (Executor.work)
on their nodes, and follows the shard records the tasks write.

A cluster is plugged in as an ArrayBackend (submit, states, cancel: the shape of
snakemake's RemoteExecutor); the generic follower (placement/follower.py) owns the
polling loop, its rate limit, the bookkeeping of attempts and the resubmissions.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from containerexec.errors import RunError, UsageError
from containerexec.run.runner import Failure
from containerexec.store.records import RunRecord

if TYPE_CHECKING:
    from containerexec.engine.base import Engine
    from containerexec.model.spec import ModuleSpec
    from containerexec.run.context import RunContext, Task


class Placement(Protocol):
    """Runs shards of a Run, at most `parallel` at once: submit and follow (`run`), cancel
    (through `run.cancel()`), resume (`resumable`, then `admit`)."""

    def admit(self, record: RunRecord) -> RunRecord:
        """Check (or prepare) a run before anything starts; may raise, or update the record
        (a cluster placement refuses an image its nodes cannot pull, or pushes it)."""
        ...

    def resumable(self, prev: RunRecord) -> None:
        """Raise when the run recorded as `prev` cannot be resumed yet (a cluster job of
        its still runs); called before anything of a resume touches the run."""
        ...

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        """Run every task of `tasks` unless `run.stopping()`; return when all have ended.

        A task is the shards one container runs (run/packing/planner.py; one shard: unpacked).
        Each shard must end with its record written by `run.run_shard` (or
        `run.run_shard_safely`, or run/packing/batch.py for a packed task); containers stop
        when `run.cancel()` is called.
        """
        ...


# -- what a cluster backend implements --------------------------------------------------


@dataclass(frozen=True)
class TaskState:
    """One array task as its backend sees it, in the words the generic follower reads.

    `word` is the backend's own (Slurm's RUNNING, NODE_FAIL, ...), kept for messages.
    An ended task is `lost` (not the shard's fault: run again, uncounted), or `ended_by`
    the backend (its time limit, memory, a cancel: one attempt of the shard's), or
    neither (the worker recorded how it ended, or it died without a record)."""

    word: str
    active: bool
    running: bool = False
    queued: bool = False  # waiting to start; after it ran, the backend requeued it
    lost: Failure | None = None
    ended_by: Failure | None = None


@dataclass(frozen=True)
class Submission:
    """One array to submit: task index -> its shards, and where its files go."""

    run_id: str
    module: str
    spec: ModuleSpec
    run_dir: Path
    folder: Path  # RUN_DIR/<kind>: the backend's scripts and task logs
    number: int  # the run's N-th job: its files are named after it
    indices: list[int]
    throttle: int
    batches: Path | None = None  # a packed run: task I runs the shards listed at I
    task_size: int = 1


@dataclass(frozen=True)
class Pacing:
    """The follower's rate limit and patience."""

    poll_s: float = 1.0
    max_resubmits: int = 3  # of shards lost to a node failure or a preemption
    last_words_s: float = 30.0  # a lost task's worker may still write its record


class ArrayBackend(Protocol):
    """A cluster that runs a job array; everything else is the generic follower's."""

    kind: str  # the registry name, recorded as SchedulerRecord.kind
    title: str  # the cluster's name to the user: 'Slurm' ('Slurm job 12', 'Slurm's nodes')

    @property
    def pacing(self) -> Pacing:
        """How often the follower polls, and how patient it is."""
        ...

    def submit(self, submission: Submission) -> str:
        """Write what the cluster needs (a script) and submit it; returns the job id."""
        ...

    def states(self, job_id: str) -> dict[int, TaskState]:
        """Task index -> its state, finished tasks included while the cluster knows them."""
        ...

    def cancel(self, job_id: str, *, pending_only: bool = False) -> None:
        """Cancel the job (or only its tasks not started yet); no error if it has ended."""
        ...

    def max_tasks(self) -> int:
        """The most tasks one array may have (task indices 0 to this minus 1); the
        follower numbers and splits arrays to fit."""
        ...

    def why(self, job_id: str, task: int, state: TaskState, folder: Path) -> str:
        """The attempt message of a task the cluster ended (or that ended without a record)."""
        ...

    def requeued(self, job_id: str, task: int) -> str:
        """The message of an attempt lost when the cluster requeued its task."""
        ...

    def cancel_hint(self, job_id: str) -> str:
        """The command a user runs to cancel the job."""
        ...


class PlacementError(RunError):
    """A placement's command failed or is missing; names the command and what it said."""

    def __init__(
        self, kind: str, command: Sequence[str], message: str, *, missing: bool = False
    ) -> None:
        self.kind = kind
        self.missing = missing  # the command is not installed here
        self.command = list(command)
        self.message = message
        super().__init__(f"{shlex.join(self.command)}: {message}")


class JobStillActive(RunError):
    """A resume asked for while an earlier cluster job of the run still has tasks active:
    its tasks and the new ones would run the same shards at once. Exit 2; nothing is
    cancelled or submitted."""

    exit_code = 2

    def __init__(
        self, run_id: str, job_id: str, states: Sequence[str], *, label: str, cancel_hint: str
    ) -> None:
        self.run_id = run_id
        self.job_id = job_id
        self.states = list(states)
        super().__init__(
            f"run {run_id} cannot resume: its {label} {job_id} is still "
            f"{'/'.join(self.states)}; nothing was submitted. Wait for it to end "
            f"(containerexec runs show {run_id}), or cancel it ({cancel_hint}), then resume"
        )


class Detached(Exception):
    """The array was submitted and the submitter does not follow it (--detach)."""

    def __init__(self, run_id: str, job_ids: list[str], label: str = "job") -> None:
        self.run_id = run_id
        self.job_ids = job_ids
        self.label = label
        super().__init__(f"run {run_id} submitted as {label} {', '.join(job_ids)}")


def array_indices(indices: Sequence[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (sbatch --array syntax, and how arrays are shown)."""
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


def active_states(backend: ArrayBackend, job_id: str) -> list[str]:
    """The words of the job's tasks still pending or running, sorted; [] once it has ended."""
    return sorted({s.word for s in backend.states(job_id).values() if s.active})


def refuse_live_jobs(backend: ArrayBackend, prev: RunRecord) -> None:
    """Raise JobStillActive while a job of `prev` recorded by `backend` has a task active."""
    sched = prev.scheduler
    if sched is None or sched.kind != backend.kind:
        return
    for job in reversed(sched.job_ids):  # the newest is the likeliest to be alive
        live = active_states(backend, job)
        if live:
            raise JobStillActive(
                prev.run_id,
                job,
                live,
                label=f"{backend.title} job",
                cancel_hint=backend.cancel_hint(job),
            )


# -- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """What the CLI (or a caller) chose for a placement: its flags (by `Flag.dest`), its
    settings from the config file and environment (by `Flag.setting`), and the
    cluster-wide choices."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    conf: Mapping[str, Any] = field(default_factory=dict)
    engine: Engine | None = None  # for push_to
    push_to: str | None = None
    detach: bool = False
    sleep: Callable[[float], object] | None = None
    notice: Callable[[str], None] | None = None  # progress for the user: push, submit, job id


@dataclass(frozen=True)
class Flag:
    """A command-line flag of a placement's setting, as data: the CLI makes the option."""

    decl: str  # '--partition'
    dest: str  # the keyword the command receives
    setting: str  # the key in the config file and CONTAINEREXEC_<KIND>_<KEY>
    help: str
    metavar: str | None = None
    multiple: bool = False


# name -> the module of its entry points, imported only when asked for (start-up): it has
# make(where) -> Placement, and a cluster's also backend() -> ArrayBackend, FLAGS, SETTINGS.
REGISTRY: dict[str, str] = {
    "local": "containerexec.run.placement.local",
    "slurm": "containerexec.run.placement.slurm",
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def _entry(kind: str) -> Any:
    if kind not in REGISTRY:
        raise UsageError(f"no placement '{kind}'; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[kind])


def make(kind: str, where: Where) -> Placement:
    """The placement named `kind`, made from `where`."""
    placement: Placement = _entry(kind).make(where)
    return placement


def flags(kind: str) -> tuple[Flag, ...]:
    """The command-line flags of a placement's settings."""
    found: tuple[Flag, ...] = getattr(_entry(kind), "FLAGS", ())
    return found


def settings(kind: str) -> tuple[str, ...]:
    """The keys of a placement's table in containerexec.toml ([slurm] partition = ...)."""
    found: tuple[str, ...] = getattr(_entry(kind), "SETTINGS", ())
    return found


def backend(kind: str) -> ArrayBackend | None:
    """The array backend that recorded a run of `kind` (to ask whether its jobs are
    still active, or to cancel them), with default settings; None for 'local', or a
    kind this containerexec does not know (a record from a newer one)."""
    if kind not in REGISTRY:
        return None
    make_backend = getattr(_entry(kind), "backend", None)
    return None if make_backend is None else make_backend()


def check_resumable(prev: RunRecord) -> None:
    """Whatever runs the resume: refuse it while a cluster job of the run is active."""
    if prev.scheduler is None:
        return
    found = backend(prev.scheduler.kind)
    if found is None:
        return
    try:
        refuse_live_jobs(found, prev)
    except PlacementError as exc:
        if not exc.missing:
            raise
        # No cluster client here (a record carried from elsewhere): no job of it runs here.
