"""SlurmScheduler: a run's shards as one Slurm job array, behind the Scheduler seam.

Plain sbatch with a rendered script, not submitit: each array task runs
`python -m containerexec worker RUN_DIR --shard $SLURM_ARRAY_TASK_ID`, the same
code path as a local shard (Executor.work -> Run.run_shard), and needs only the
run folder on a filesystem the nodes share. A packed run (run/packing/planner.py) makes
one task per batch instead: task I runs the shards listed at I in
RUN_DIR/slurm/batches-N.json in one container (Executor.work_batch ->
batch.run_batch), and the values a task did not start are submitted again.
Nothing is pickled, so the nodes need containerexec but not the submitter's
exact Python objects, and the script a user can read (RUN_DIR/slurm/job-N.sh)
is exactly what ran.

The submitting process follows the array through the shard records the tasks
write and `squeue -r -t all` (finished tasks stay listed for MinJobAge; sacct
where accounting exists), maps Slurm's own outcomes to failure kinds, resubmits
shards lost to a node failure, a preemption or a requeue without using their
retry budget, and cancels with scancel. A task Slurm ends at its time limit is
one attempt of kind `timeout`, as a local timeout is, and counts as one. A
resume is refused while an earlier job of the run is still pending or running.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from containerexec.engine.base import Engine
from containerexec.environment import images
from containerexec.environment.sharing import split_target
from containerexec.errors import ImageError, RecordError
from containerexec.model.arrays import Shard
from containerexec.run.context import RunContext, Task
from containerexec.run.packing import planner
from containerexec.run.results import with_attempts
from containerexec.run.runner import Attempt, Failure, should_retry
from containerexec.run.sbatch import (
    ACTIVE,
    JobStillActive,
    SlurmClient,
    SlurmError,
    SlurmSettings,
    render_script,
)
from containerexec.store.records import (
    AttemptRecord,
    RunRecord,
    SchedulerRecord,
    ShardRecord,
    ShardState,
    load_model,
)

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


class Detached(Exception):
    """The array was submitted and the submitter does not follow it (--detach)."""

    def __init__(self, run_id: str, job_ids: list[str]) -> None:
        self.run_id = run_id
        self.job_ids = job_ids
        super().__init__(f"run {run_id} submitted as Slurm job {', '.join(job_ids)}")


# -- the scheduler -----------------------------------------------------------------------


@dataclass
class SlurmScheduler:
    """Submits a run's shards as a Slurm job array and follows it to its end."""

    settings: SlurmSettings = field(default_factory=SlurmSettings)
    client: SlurmClient = field(default_factory=SlurmClient)
    engine: Engine | None = None  # for --push-to
    push_to: str | None = None
    detach: bool = False
    sleep: Callable[[float], object] = time.sleep

    def admit(self, record: RunRecord) -> RunRecord:
        """Refuse (or push, with --push-to) an image the nodes could not pull by digest."""
        image = record.image
        if self.push_to:
            assert self.engine is not None, "--push-to needs the engine"
            repo, tag = split_target(record.module, self.push_to)
            self.engine.tag(image.id, repo, tag)
            digest = images.push_with_retries(
                self.engine, record.module, repo, tag, sleep=self.sleep
            )
            pinned = f"{repo}@{digest}"
            image = image.model_copy(update={"pinned": pinned, "digest": pinned})
        elif image.digest is None:
            raise ImageError(
                record.module,
                image.pinned,
                f"a local image ({image.source}, never pushed) that Slurm's nodes cannot pull; "
                f"push it first (containerexec push SPEC REGISTRY/REPO:TAG) and name it in "
                f"the spec, or run again with --push-to REGISTRY/REPO[:TAG]",
            )
        # A resumed run keeps its earlier jobs: job-N.sh and batches-N.json count on.
        sched = record.scheduler if record.scheduler and record.scheduler.kind == "slurm" else None
        return record.model_copy(
            update={"image": image, "scheduler": sched or SchedulerRecord(kind="slurm")}
        )

    def resumable(self, prev: RunRecord) -> None:
        """Refuse to resume a run while one of its Slurm jobs has a task pending or running:
        the new tasks would race the old ones for the same shards. Nothing is cancelled."""
        sched = prev.scheduler
        if sched is None or sched.kind != "slurm":
            return
        for job in reversed(sched.job_ids):  # the newest is the likeliest to be alive
            live = sorted({state for state, _ in self.client.states(job).values()} & ACTIVE)
            if live:
                raise JobStillActive(prev.run_id, job, live)

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        follower = _Follower(self, run, parallel, tasks)
        follower.follow([shard for task in tasks for shard in task])


FINAL = ("succeeded", "failed", "cancelled")


class _Follower:
    """One run's arrays: submit, follow, cancel, resubmit the lost shards.

    A task carries one shard, or one batch of shards when the run is packed; the
    follower maps task indices to their shards and reads each shard's own record."""

    def __init__(
        self, sched: SlurmScheduler, run: RunContext, parallel: int, tasks: list[Task]
    ) -> None:
        self.s = sched
        self.run = run
        self.parallel = parallel
        self.store = run.services.store
        self.run_dir = self.store.run_dir(run.id).absolute()
        self.planned = tasks
        self.packed = planner.packed(tasks)
        self.cancel_sent = False  # scancel of the whole job (a cancel)
        self.pending_cancelled = False  # scancel of its pending tasks (max_failed_shards)
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
            tasks = self._tasks(todo)
            try:
                self._fits(tasks)
                job = self._submit(tasks)
            except SlurmError as exc:
                self.run.refused(f"slurm_refused: {exc.message}")
                raise
            if self.s.detach:
                raise Detached(self.run.id, list(self.run.record.scheduler.job_ids))  # type: ignore[union-attr]
            lost, back = self._follow(job, tasks)
            resubmits += 1
            if lost and resubmits > self.s.settings.max_resubmits:
                for shard, failure in lost:
                    why = f"lost {resubmits} times; not submitted again"
                    self.run.ended_elsewhere(shard, self._end(shard, failure, why))
                lost = []
            todo = sorted([shard for shard, _ in lost] + back, key=lambda s: s.index)

    def _tasks(self, todo: list[Shard]) -> dict[int, list[Shard]]:
        """Array task index -> its shards: the shard's own index, or the batch number."""
        if self.packed:
            return dict(enumerate(planner.regroup(todo, self.planned)))
        return {s.index: [s] for s in todo}

    def _fits(self, tasks: dict[int, list[Shard]]) -> None:
        """Refuse, before sbatch does, an array whose task indices the cluster cannot take."""
        limit = self.s.client.max_array_size()
        top = max(tasks)
        if top < limit:
            return
        shards = sum(len(batch) for batch in tasks.values())
        k = math.ceil(shards / (limit - 1))
        what = "shard" if not self.packed else "batch"
        raise SlurmError(
            ["sbatch"],
            f"module '{self.run.spec.name}': the array's largest task index is {top} (one task "
            f"per {what}) but this cluster's MaxArraySize is {limit}, so Slurm would refuse "
            f"it. Pack the shards into fewer tasks: --batch-size auto (about "
            f"{2 * self.parallel} tasks) or --batch-size {k} or more",
        )

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
        (self.run_dir / "slurm").mkdir(parents=True, exist_ok=True)
        n = len(self.run.record.scheduler.job_ids) if self.run.record.scheduler else 0
        script = self.run_dir / "slurm" / f"job-{n}.sh"
        batches = None
        if self.packed:  # task I runs the shards at I: read by `containerexec worker --batch`
            batches = self.run_dir / "slurm" / f"batches-{n}.json"
            plan = [[s.index for s in tasks[i]] for i in sorted(tasks)]
            batches.write_text(json.dumps(plan) + "\n")
        script.write_text(
            render_script(
                run_id=self.run.id,
                module=self.run.spec.name,
                run_dir=self.run_dir,
                indices=list(tasks),
                throttle=self.parallel,
                spec=self.run.spec,
                settings=self.s.settings,
                batches=batches,
                task_size=planner.task_size(self.planned),
            )
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
        job = self.s.client.submit(script)
        sched = self.run.record.scheduler or SchedulerRecord(kind="slurm")
        sched = sched.model_copy(update={"job_ids": [*sched.job_ids, job]})
        self.run.record = self.run.record.model_copy(update={"scheduler": sched})
        self.store.write_run(self.run.record)
        return job

    def _follow(
        self, job: str, tasks: dict[int, list[Shard]]
    ) -> tuple[list[tuple[Shard, Failure]], list[Shard]]:
        """Until every task of `job` has ended; returns the shards lost to Slurm, and those
        a packed task did not start (to submit again, uncounted)."""
        waiting = dict(tasks)
        lost: list[tuple[Shard, Failure]] = []
        back: list[Shard] = []
        missing_polls = 0
        last_words: dict[int, int] = {}  # task -> polls spent waiting for its worker's record
        patience = math.ceil(self.s.settings.last_words_s / max(self.s.settings.poll_s, 0.01))
        while waiting:
            # A cancel stops everything; too many failed shards only stop new ones.
            if self.run.tracker.cancelled.is_set() and not self.cancel_sent:
                self.s.client.cancel(job)
                self.cancel_sent = True
            elif self.run.stopping() and not (self.pending_cancelled or self.cancel_sent):
                self.s.client.cancel(job, pending_only=True)
                self.pending_cancelled = True
            states = self.s.client.states(job)
            missing_polls = 0 if states else missing_polls + 1
            for task, shards in list(waiting.items()):
                state, _ = states.get(task, ("", ""))
                if not state and missing_polls < 3:
                    continue
                if state == "RUNNING":
                    self.ran.add(task)
                    for shard in shards:
                        self._started(shard)
                elif task in self.ran and state in REQUEUED:
                    # Back in the queue after it ran (a node failure with requeue, or
                    # `scontrol requeue`): the run the worker recorded as cancelled was lost.
                    self.ran.discard(task)
                    self.requeued.add(task)
                if state in ACTIVE:
                    continue
                if state in LOST and last_words.get(task, 0) < patience and self._writing(shards):
                    # Slurm says NODE_FAIL as it sends SIGTERM: a worker on a node that lives
                    # gets its KillWait to record what it stopped, or it would overwrite ours.
                    last_words[task] = last_words.get(task, 0) + 1
                    continue
                del waiting[task]
                more_lost, more_back = self._ended(job, task, shards, state or "UNKNOWN")
                lost += more_lost
                back += more_back
            if waiting:
                self.s.sleep(self.s.settings.poll_s)
        return lost, back

    def _ended(
        self, job: str, task: int, shards: list[Shard], state: str
    ) -> tuple[list[tuple[Shard, Failure]], list[Shard]]:
        """A task ended: trust the fresh final records of its shards; charge Slurm's outcome
        to the shard it ended (the first unrecorded one), and hand back the others."""
        records = {s.index: self._fresh(s) for s in shards}
        if task in self.requeued:
            records = {
                i: None if r is None else self._requeue_lost(r, job, task)
                for i, r in records.items()
            }
        ours = self.cancel_sent or (
            self.pending_cancelled and all(r is None for r in records.values())
        )
        if state == "CANCELLED" and not ours:
            self.run.cancel(signal.SIGTERM)  # scancel from outside, or `runs cancel`
        charged = False
        lost: list[tuple[Shard, Failure]] = []
        back: list[Shard] = []
        handled: set[int] = set()
        for shard in shards:
            rec = records[shard.index]
            if rec is None or rec.state not in FINAL:
                continue
            if state in LOST and rec.state == "cancelled" and not self.run.stopping():
                # Slurm's SIGTERM as it took the node away: the worker saw a cancel.
                self._end(shard, LOST[state], _resubmitted(state), rec, lost=True)
                lost.append((shard, LOST[state]))
                handled.add(shard.index)
                continue
            # The worker's own record, unless Slurm ended it (its SIGTERM at the time limit
            # reads as a cancel to the worker): then Slurm's outcome replaces that attempt.
            by_slurm = rec.state not in ("succeeded", state.lower()) and (
                rec.state == "cancelled" or not self.packed  # a packed value may just fail
            )
            ended = state in ENDED_BY_SLURM and by_slurm
            if ended:
                why = _why(state, job, task, self.run_dir)
                rec = self._end(shard, ENDED_BY_SLURM[state], why, replaces=rec)
                charged = True
            if self._settle(shard, rec, by_slurm=ended):
                back.append(shard)
        for shard in shards:
            rec = records[shard.index]
            if (rec is not None and rec.state in FINAL) or shard.index in handled:
                continue
            if state in LOST and not self.run.stopping():
                self._end(shard, LOST[state], _resubmitted(state), lost=True)
                lost.append((shard, LOST[state]))
            elif self.packed and self.run.stopping():
                continue  # never started: no record, as in a packed run here
            elif self.packed and charged:
                back.append(shard)  # after the value Slurm ended: not started, uncounted
            else:
                charged = True
                failure = ENDED_BY_SLURM.get(state, Failure.WORKER_FAILED)
                rec = self._end(shard, failure, _why(state, job, task, self.run_dir))
                if self._settle(shard, rec, by_slurm=True):
                    back.append(shard)
        return lost, back

    def _writing(self, shards: list[Shard]) -> bool:
        """Whether a worker of these shards started and has not written its final record."""
        fresh = (self._fresh(s) for s in shards)
        return any(r is not None and r.state not in FINAL for r in fresh)

    def _settle(self, shard: Shard, rec: ShardRecord, *, by_slurm: bool = False) -> bool:
        """Count a shard's final record, unless Slurm ended its attempt at the time limit and
        the retry policy grants another, as it would a local timeout: then the shard is
        submitted again (True), that attempt counted."""
        timed_out = by_slurm and rec.failure == Failure.TIMEOUT
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
        """The attempts a requeue ended (the worker saw Slurm's SIGTERM as a cancel) were lost
        with their node: `node_lost`, not counted. The last attempt is the task's own end."""
        since = self.submitted_at.get(rec.index, 0)
        attempts = list(rec.attempts)
        for k in range(since, len(attempts) - 1):
            if attempts[k].failure == Failure.CANCELLED:
                attempts[k] = attempts[k].model_copy(
                    update={
                        "failure": str(Failure.NODE_LOST),
                        "counted": False,
                        "message": f"Slurm requeued task {job}_{task} while this attempt "
                        "ran (a node failure or scontrol requeue); not counted as a retry",
                    }
                )
        if attempts == list(rec.attempts):
            return rec
        fixed = rec.model_copy(update={"attempts": attempts})
        self.store.write_shard(fixed)
        return fixed

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
        """Write the record of a shard Slurm ended: final, or `lost` (pending, its attempt
        not counted, the shard submitted again). `replaces` is the record its worker wrote
        as Slurm stopped it: Slurm's outcome takes the place of that last attempt, so one
        attempt stays one attempt."""
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


def _resubmitted(state: str) -> str:
    return f"Slurm: {state}; submitted again (not counted as a retry)"


def _why(state: str, job: str, task: int, run_dir: Path) -> str:
    name = f"{job}_{task}"
    log = run_dir / "slurm" / f"{name}.out"
    if state in ("TIMEOUT", "DEADLINE"):
        return (
            f"Slurm ended task {name} at its time limit ({state}); raise --time or the "
            f"module's resources.timeout; task log {log}"
        )
    if state == "OUT_OF_MEMORY":
        return f"Slurm ended task {name}: OUT_OF_MEMORY; raise resources.memory"
    if state == "CANCELLED":
        return f"Slurm task {name} was cancelled"
    return (
        f"Slurm task {name} ended {state} without a shard record; its log {log} says why "
        "(is the run folder on a filesystem the node shares?)"
    )


def _stamp(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    return None
