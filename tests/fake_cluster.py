"""A cluster that is not Slurm, for the generic follower: an ArrayBackend whose job N's
tasks walk through `jobs[N]`, one step per poll, and a registry entry ("fake") for it.

A step is (TaskState, worker action); the action runs the task's shard through
`Executor.work` on a FakeEngine, as a real task's worker would on its node: 'ok' (exit
0), 'exit3', 'sigterm' (the cluster's SIGTERM finds it running: the worker records a
cancel), 'started' (only the worker's 'running' record), or None.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from fakes import FakeEngine, Outcome

from containerexec.run.executor import Executor
from containerexec.run.placement.base import (
    Flag,
    Pacing,
    PlacementError,
    Submission,
    TaskState,
    Where,
)
from containerexec.run.placement.cluster import ArrayPlacement
from containerexec.run.runner import Failure
from containerexec.store.tree import RunStore

Step = tuple[TaskState, str | None]

PENDING = TaskState("Pending", active=True, queued=True)
RUNNING = TaskState("Running", active=True, running=True)
SUCCEEDED = TaskState("Succeeded", active=False)
FAILED = TaskState("Failed", active=False)
EVICTED = TaskState("Evicted", active=False, lost=Failure.NODE_LOST)
PREEMPTED = TaskState("Preempted", active=False, lost=Failure.PREEMPTED)
DEADLINE = TaskState("DeadlineExceeded", active=False, ended_by=Failure.TIMEOUT)
OOM = TaskState("OOMKilled", active=False, ended_by=Failure.OOM)
DELETED = TaskState("Deleted", active=False, ended_by=Failure.CANCELLED)

FLAGS = (Flag("--namespace", "namespace", "namespace", "The fake's namespace."),)
SETTINGS = ("namespace",)


def work(store: RunStore, run_id: str, task: int, action: str) -> None:
    """What a task's worker does at a step: run its shard as the action says."""
    code = 3 if action == "exit3" else 0
    worker = Executor(FakeEngine(lambda inv, n: Outcome(exit_code=code)), store)
    if action == "started":  # the worker's 'running' record, as run_shard writes it first
        run = worker.reopen(run_id, task)
        shard = run.shards[task]
        store.write_shard(run.base_record(shard, attempts=run.earlier_attempts(shard)))
        return
    if action == "sigterm":
        worker.cancel(signal.SIGTERM)
    worker.work(run_id, task)


class FakeCluster:
    """An ArrayBackend in memory; `live` overrides a job's states (for a resume check)."""

    kind = "fake"
    title = "Fake"
    pacing = Pacing(poll_s=0.0, max_resubmits=2, last_words_s=3.0)
    last: ClassVar[FakeCluster | None] = None  # what the registry's backend() hands out

    def __init__(self, store: RunStore, jobs: Sequence[Sequence[Step]], max_tasks: int = 100):
        self.store = store
        self.jobs = jobs
        self.limit = max_tasks  # the most tasks one array may have
        self.submitted: list[Submission] = []
        self.polls: dict[str, int] = {}
        self.cancelled: list[tuple[str, bool]] = []
        self.live: dict[str, dict[int, TaskState]] = {}
        FakeCluster.last = self

    def submit(self, submission: Submission) -> str:
        if len(submission.indices) > self.limit or max(submission.indices) >= self.limit:
            raise PlacementError(
                "fake", ["fake-submit"], f"module '{submission.module}': too many tasks"
            )
        for job in list(self.polls):  # time passes: earlier jobs' workers finish what they do
            while self.polls[job] < len(self.jobs[int(job)]) - 1:
                self.states(job)
        self.submitted.append(submission)
        return str(len(self.submitted) - 1)

    def states(self, job_id: str) -> dict[int, TaskState]:
        if job_id in self.live:
            return self.live[job_id]
        steps = self.jobs[int(job_id)]
        n = self.polls[job_id] = self.polls.get(job_id, -1) + 1
        state, action = steps[min(n, len(steps) - 1)]
        sub = self.submitted[int(job_id)]
        if n < len(steps) and action is not None:
            plan = json.loads(sub.batches.read_text()) if sub.batches else None
            for task in sub.indices:
                for shard in plan[task] if plan else [task]:
                    work(self.store, sub.run_id, shard, action)
        return {task: state for task in sub.indices}

    def cancel(self, job_id: str, *, pending_only: bool = False) -> None:
        self.cancelled.append((job_id, pending_only))

    def max_tasks(self) -> int:
        return self.limit

    def why(self, job_id: str, task: int, state: TaskState, folder: Path) -> str:
        return f"fake task {job_id}/{task}: {state.word}"

    def requeued(self, job_id: str, task: int) -> str:
        return f"fake requeued {job_id}/{task}"

    def cancel_hint(self, job_id: str) -> str:
        return f"fake-delete {job_id}"


def make(where: Where) -> ArrayPlacement:
    """The registry's entry point: the last FakeCluster made, behind the generic follower."""
    assert FakeCluster.last is not None
    return ArrayPlacement(FakeCluster.last, sleep=lambda s: None, detach=where.detach)


def backend() -> FakeCluster | None:
    return FakeCluster.last
