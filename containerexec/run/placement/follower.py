"""The generic array follower: submit a run's shards as an array of a cluster backend,
follow its tasks, cancel, and resubmit the shards the cluster lost.

It owns what every cluster shares (snakemake's RemoteExecutor base, in our terms):
the polling loop and its rate limit (Pacing), the task -> shards bookkeeping of a
packed run, the shard records the tasks write, and how a cluster's outcome becomes
an attempt. A task lost to a node failure, a preemption or a requeue is run again
without using the shard's retry budget; a task the cluster ended at its time limit
is one attempt of kind `timeout`, as a local timeout is, and counts as one. The
backend (ArrayBackend) only submits, reports task states and cancels.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from containerexec.errors import RecordError
from containerexec.model.arrays import Shard
from containerexec.run.context import RunContext, Task
from containerexec.run.packing import planner
from containerexec.run.placement.base import (
    ArrayBackend,
    Detached,
    PlacementError,
    Submission,
    TaskState,
    array_indices,
)
from containerexec.run.results import with_attempts
from containerexec.run.runner import Attempt, Failure, should_retry
from containerexec.store.records import (
    AttemptRecord,
    SchedulerRecord,
    ShardRecord,
    ShardState,
    load_model,
)

FINAL = ("succeeded", "failed", "cancelled")
UNKNOWN = TaskState(word="UNKNOWN", active=False)  # a task the cluster no longer lists


class ArrayFollower:
    """One run's arrays on one backend: submit, follow, cancel, resubmit the lost shards.

    A task carries one shard, or one batch of shards when the run is packed; the
    follower maps task indices to their shards and reads each shard's own record."""

    def __init__(
        self,
        backend: ArrayBackend,
        run: RunContext,
        parallel: int,
        tasks: list[Task],
        *,
        detach: bool = False,
        sleep: Callable[[float], object] = time.sleep,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.notice = notice  # progress for the user: the submission and its job id
        self.pacing = backend.pacing
        self.detach = detach
        self.sleep = sleep
        self.run = run
        self.parallel = parallel
        self.store = run.services.store
        self.run_dir = self.store.run_dir(run.id).absolute()
        self.folder = self.run_dir / backend.kind  # its scripts, batch plans and task logs
        self.planned = tasks
        self.packed = planner.packed(tasks)
        self.cancel_sent = False  # the whole job cancelled (a cancel)
        self.pending_cancelled = False  # its pending tasks cancelled (max_failed_shards)
        self.announced: set[int] = set()  # shards said to have started
        self.resumed_at: dict[int, int] = {}  # shard -> its attempts from before this run
        self.submitted_at: dict[int, int] = {}  # shard -> its attempts when last submitted
        self.ran: set[int] = set()  # tasks of the current job seen RUNNING
        self.requeued: set[int] = set()  # ... and seen going back to the queue since

    def follow(self, todo: list[Shard]) -> None:
        resubmits = 0
        self.resumed_at = {s.index: len(self.run.earlier_attempts(s)) for s in todo}
        todo = self._uncached(todo)
        if todo and self.packed:
            planner.ready(self.run, todo)  # the image can run packed: before any submission
        while todo and not self.run.stopping():
            tasks, later = self._tasks(todo)
            try:
                if later and self.detach:  # nothing would submit the next arrays
                    raise PlacementError(
                        self.backend.kind,
                        ["--detach"],
                        f"module '{self.run.spec.name}': {len(tasks) + len(later)} shards "
                        f"need several arrays here (at most {len(tasks)} tasks each), which "
                        "a detached run cannot submit one after another; pack the shards "
                        "(--batch-size auto) or run without --detach",
                    )
                job = self._submit(tasks)
            except PlacementError as exc:
                self.run.refused(f"{exc.kind}_refused: {exc.message}")
                raise
            if self.detach:
                jobs = self.run.record.scheduler.job_ids  # type: ignore[union-attr]
                raise Detached(self.run.id, list(jobs), f"{self.backend.title} job")
            lost, back = self._follow(job, tasks)
            if lost:
                resubmits += 1
            if lost and resubmits > self.pacing.max_resubmits:
                for shard, failure in lost:
                    why = f"lost {resubmits} times; not submitted again"
                    self.run.ended_elsewhere(shard, self._end(shard, failure, why))
                lost = []
            todo = sorted([shard for shard, _ in lost] + back + later, key=lambda s: s.index)

    def _tasks(self, todo: list[Shard]) -> tuple[dict[int, list[Shard]], list[Shard]]:
        """Array task index -> its shards, and the shards left for a later array.

        A task is a shard, or a batch of a packed run. Task K runs shard K while every
        index fits under the cluster's limit; past it (a resume of shard 1500 where
        MaxArraySize is 1001) the tasks are numbered 0, 1, ... and a file lists each
        one's shards, as for batches. An array holds at most the limit's tasks: the
        rest go in the next array, submitted once this one has ended."""
        groups = planner.regroup(todo, self.planned) if self.packed else [[s] for s in todo]
        limit = max(1, self.backend.max_tasks())
        now, later = groups[:limit], [s for group in groups[limit:] for s in group]
        if self.packed or max(g[0].index for g in now) >= limit:
            return dict(enumerate(now)), later
        return {g[0].index: g for g in now}, later

    def _uncached(self, todo: list[Shard]) -> list[Shard]:
        """Serve the shards the cache holds here, before anything is submitted: a job whose
        every shard is cached submits nothing. Returns the shards still to run."""
        cache = self.run.services.cache if self.run.spec.cache else None
        if cache is None:
            return todo
        left = []
        for shard in todo:
            base = self.run.base_record(shard, attempts=self.run.earlier_attempts(shard))
            if not cache.holds(self.run.spec, self.run.bindings, base.invocation):
                left.append(shard)
                continue
            self._started(shard)
            staging_dir = self.store.staging(self.run.id, shard.index)
            if self.run.from_cache(shard, base, staging_dir) is None:
                left.append(shard)  # a damaged entry: the shard runs on a node after all
        return left

    def _submit(self, tasks: dict[int, list[Shard]]) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        sched = self.run.record.scheduler or SchedulerRecord(kind=self.backend.kind)
        n = len(sched.job_ids)
        batches = None
        if any([s.index for s in shards] != [i] for i, shards in tasks.items()):
            # task I runs the shards listed at I: read by `containerexec worker --batch`
            batches = self.folder / f"batches-{n}.json"
            plan = [[s.index for s in tasks[i]] for i in sorted(tasks)]
            batches.write_text(json.dumps(plan) + "\n")
        submission = Submission(
            run_id=self.run.id,
            module=self.run.spec.name,
            spec=self.run.spec,
            run_dir=self.run_dir,
            folder=self.folder,
            number=n,
            indices=list(tasks),
            throttle=self.parallel,
            batches=batches,
            task_size=planner.task_size(self.planned),
        )
        self.before = {
            s.index: _stamp(self.store.shard_path(self.run.id, s.index))
            for batch in tasks.values()
            for s in batch
        }
        self.submitted_at = {
            s.index: len(self.run.earlier_attempts(s)) for batch in tasks.values() for s in batch
        }
        self.ran, self.requeued = set(), set()
        what = f"array {array_indices(submission.indices)}%{max(1, submission.throttle)}"
        self._say(f"submitting run {self.run.id} to {self.backend.title} ({what}) ...")
        job = self.backend.submit(submission)
        self._say(f"submitted {self.backend.title} job {job} ({what}) for run {self.run.id}")
        sched = sched.model_copy(update={"job_ids": [*sched.job_ids, job]})
        self.run.record = self.run.record.model_copy(update={"scheduler": sched})
        self.store.write_run(self.run.record)
        return job

    def _follow(
        self, job: str, tasks: dict[int, list[Shard]]
    ) -> tuple[list[tuple[Shard, Failure]], list[Shard]]:
        """Until every task of `job` has ended; returns the shards the cluster lost, and
        those a packed task did not start (to submit again, uncounted)."""
        waiting = dict(tasks)
        lost: list[tuple[Shard, Failure]] = []
        back: list[Shard] = []
        missing_polls = 0
        last_words: dict[int, int] = {}  # task -> polls spent waiting for its worker's record
        patience = math.ceil(self.pacing.last_words_s / max(self.pacing.poll_s, 0.01))
        while waiting:
            # A cancel stops everything; too many failed shards only stop new ones.
            if self.run.tracker.cancelled.is_set() and not self.cancel_sent:
                self.backend.cancel(job)
                self.cancel_sent = True
            elif self.run.stopping() and not (self.pending_cancelled or self.cancel_sent):
                self.backend.cancel(job, pending_only=True)
                self.pending_cancelled = True
            states = self.backend.states(job)
            missing_polls = 0 if states else missing_polls + 1
            for task, shards in list(waiting.items()):
                state = states.get(task)
                if state is None and missing_polls < 3:
                    continue
                state = state or UNKNOWN
                if state.running:
                    self.ran.add(task)
                    for shard in shards:
                        self._started(shard)
                elif task in self.ran and state.queued:
                    # Back in the queue after it ran (a node failure with requeue, or an
                    # admin's requeue): the run the worker recorded as cancelled was lost.
                    self.ran.discard(task)
                    self.requeued.add(task)
                if state.active:
                    continue
                ended_by_cluster = state.lost is not None or state.ended_by is not None
                if (
                    ended_by_cluster
                    and last_words.get(task, 0) < patience
                    and self._writing(shards)
                ):
                    # A cluster reports a task lost or out of time as it sends SIGTERM: a
                    # worker that lives gets its grace to record what it stopped, or it
                    # would overwrite ours (and a run sweeping its containers meanwhile
                    # would stop its container before the worker knows it was cancelled).
                    last_words[task] = last_words.get(task, 0) + 1
                    continue
                del waiting[task]
                more_lost, more_back = self._ended(job, task, shards, state)
                lost += more_lost
                back += more_back
            if waiting:
                self.sleep(self.pacing.poll_s)
        return lost, back

    def _ended(
        self, job: str, task: int, shards: list[Shard], state: TaskState
    ) -> tuple[list[tuple[Shard, Failure]], list[Shard]]:
        """A task ended: trust the fresh final records of its shards; charge the cluster's
        outcome to the shard it ended (the first unrecorded one), and hand back the others."""
        records = {s.index: self._fresh(s) for s in shards}
        if task in self.requeued:
            records = {
                i: None if r is None else self._requeue_lost(r, job, task)
                for i, r in records.items()
            }
        ours = self.cancel_sent or (
            self.pending_cancelled and all(r is None for r in records.values())
        )
        if state.ended_by == Failure.CANCELLED and not ours:
            self.run.cancel(signal.SIGTERM)  # a cancel from outside, or `runs cancel`
        charged = False
        lost: list[tuple[Shard, Failure]] = []
        back: list[Shard] = []
        handled: set[int] = set()
        why = self.backend.why(job, task, state, self.folder)
        for shard in shards:
            rec = records[shard.index]
            if rec is None or rec.state not in FINAL:
                continue
            if state.lost and rec.state == "cancelled" and not self.run.stopping():
                # The cluster's SIGTERM as it took the node away: the worker saw a cancel.
                self._end(shard, state.lost, why, rec, lost=True)
                lost.append((shard, state.lost))
                handled.add(shard.index)
                continue
            # The worker's own record, unless the cluster ended it (its SIGTERM at the time
            # limit reads as a cancel to the worker): then its outcome replaces that attempt.
            same = state.ended_by == Failure.CANCELLED and rec.state == "cancelled"
            by_cluster = (
                state.ended_by is not None
                and rec.state != "succeeded"
                and not same
                and (rec.state == "cancelled" or not self.packed)  # a packed value may fail
            )
            if by_cluster and state.ended_by is not None:
                rec = self._end(shard, state.ended_by, why, replaces=rec)
                charged = True
            if self._settle(shard, rec, by_cluster=by_cluster):
                back.append(shard)
        for shard in shards:
            rec = records[shard.index]
            if (rec is not None and rec.state in FINAL) or shard.index in handled:
                continue
            if state.lost and not self.run.stopping():
                self._end(shard, state.lost, why, lost=True)
                lost.append((shard, state.lost))
            elif self.packed and self.run.stopping():
                continue  # never started: no record, as in a packed run here
            elif self.packed and charged:
                back.append(shard)  # after the value the cluster ended: not started, uncounted
            else:
                charged = True
                rec = self._end(shard, state.ended_by or Failure.WORKER_FAILED, why)
                if self._settle(shard, rec, by_cluster=True):
                    back.append(shard)
        return lost, back

    def _writing(self, shards: list[Shard]) -> bool:
        """Whether a worker of these shards started and has not written its final record."""
        fresh = (self._fresh(s) for s in shards)
        return any(r is not None and r.state not in FINAL for r in fresh)

    def _settle(self, shard: Shard, rec: ShardRecord, *, by_cluster: bool = False) -> bool:
        """Count a shard's final record, unless the cluster ended its attempt at the time
        limit and the retry policy grants another, as it would a local timeout: then the
        shard is submitted again (True), that attempt counted."""
        timed_out = by_cluster and rec.failure == Failure.TIMEOUT
        if timed_out and not self.run.stopping():
            ours = rec.attempts[self.resumed_at.get(shard.index, 0) :]
            counted = sum(a.counted for a in ours)
            timeout = Attempt(number=1, started_at=0, ended_at=0, failure=Failure.TIMEOUT)
            if should_retry(self.run.policy, timeout, counted):
                self.store.write_shard(rec.model_copy(update={"state": "pending"}))
                self.announced.discard(shard.index)
                return True
        self.run.ended_elsewhere(shard, rec)
        return False

    def _requeue_lost(self, rec: ShardRecord, job: str, task: int) -> ShardRecord:
        """The attempts a requeue ended (the worker saw the cluster's SIGTERM as a cancel) were lost
        with their node: `node_lost`, not counted. The last attempt is the task's own end."""
        since = self.submitted_at.get(rec.index, 0)
        attempts = list(rec.attempts)
        for k in range(since, len(attempts) - 1):
            if attempts[k].failure == Failure.CANCELLED:
                attempts[k] = attempts[k].model_copy(
                    update={
                        "failure": str(Failure.NODE_LOST),
                        "counted": False,
                        "message": self.backend.requeued(job, task),
                    }
                )
        if attempts == list(rec.attempts):
            return rec
        fixed = rec.model_copy(update={"attempts": attempts})
        self.store.write_shard(fixed)
        return fixed

    def _say(self, text: str) -> None:
        if self.notice is not None:
            self.notice(text)

    def _started(self, shard: Shard) -> None:
        if shard.index not in self.announced:
            self.announced.add(shard.index)
            self.run.started(shard)

    def _fresh(self, shard: Shard) -> ShardRecord | None:
        path = self.store.shard_path(self.run.id, shard.index)
        if _stamp(path) == self.before.get(shard.index):
            return None  # the task never wrote it: an old record from before a resume
        try:
            return load_model(path, ShardRecord)
        except RecordError:
            return None

    def _end(
        self,
        shard: Shard,
        failure: Failure,
        message: str,
        replaces: ShardRecord | None = None,
        *,
        lost: bool = False,
    ) -> ShardRecord:
        """Write the record of a shard the cluster ended: final, or `lost` (pending, its
        attempt not counted, the shard submitted again). `replaces` is the record its worker
        wrote as the cluster stopped it: the cluster's outcome takes the place of that last
        attempt, so one attempt stays one attempt."""
        now = self.run.services.clock()
        state: ShardState = "cancelled" if failure == Failure.CANCELLED else "failed"
        if lost:
            state = "pending"
            self.announced.discard(shard.index)  # it starts again in the next job
        earlier: list[AttemptRecord] = self.run.earlier_attempts(shard)
        started_at, container = now, None
        if replaces is not None and replaces.attempts:
            *earlier, last = replaces.attempts
            started_at, container = last.started_at, last.container_id
        attempt = Attempt(
            number=1,
            container_id=container,
            started_at=started_at,
            ended_at=now,
            failure=failure,
            message=message,
            counted=not lost,
        )
        base = self.run.base_record(shard, attempts=earlier)
        final = with_attempts(base, state, [attempt], self.store.log_path(self.run.id, shard.index))
        self.store.write_shard(final)
        return final


def _stamp(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    return None
