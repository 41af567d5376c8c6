"""The Run: the handle that owns one module run end to end, like submitit's Job.

A Run has its id and folders in the store, the shards it will run, every attempt,
the commit of outputs, the records, cancel, and the result. Executor.start,
Executor.resume and repro's replay all make one, and all of them run shards
through `Run.run_shard`, which needs nothing but what run.json holds: so a shard
can also run in another process (or on another node) given the run folder and
its index (see Executor.work).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from containerexec.errors import EngineError, RecordError, RunError
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation
from containerexec.model.spec import ModuleSpec, RetryPolicy
from containerexec.run import staging
from containerexec.run.context import Services, Task
from containerexec.run.logs import LogSink
from containerexec.run.packing import planner
from containerexec.run.placement.base import Placement as Scheduler
from containerexec.run.results import (
    Counts,
    RunResult,
    ShardEvent,
    Tally,
    last_attempt,
    with_attempts,
)
from containerexec.run.runner import (
    Attempt,
    Failure,
    Tracker,
    fails_run,
    run_with_retries,
    shard_state,
)
from containerexec.store.records import (
    AttemptRecord,
    FileEntry,
    ImageRecord,
    RunRecord,
    ShardRecord,
    ShardState,
    load_model,
)

# The reasons a run stops early, as the first word of RunRecord.reason (Kubernetes' names).
FAIL_FAST = "fail_fast"
DEADLINE_EXCEEDED = "deadline_exceeded"


InvocationFor = Callable[[Shard], Invocation]
Interactive = Callable[[Invocation, Attempt], Attempt]


class Run:
    """One module run. Made by the Executor; `wait()` or `result()` for its end."""

    def __init__(
        self,
        services: Services,
        *,
        spec: ModuleSpec,
        bindings: Bindings,
        record: RunRecord,
        shards: list[Shard],
        invocation_for: InvocationFor,
        policy: RetryPolicy | None = None,
        keep: bool = False,
        interactive: Interactive | None = None,
        input_manifests: dict[str, list[FileEntry]] | None = None,
        earlier_reason: str | None = None,
    ) -> None:
        """`invocation_for` builds a shard's Invocation (resolved from the spec, or a
        recorded one for a replay); `interactive` runs an attempt attached to this
        terminal instead of through the runner (repro --debug); `input_manifests`, the
        inputs as they are now when a resume accepted changes, goes in each shard's record;
        `earlier_reason`, the reason a resumed run had stopped for, which a refusal keeps."""
        self.services = services
        self.spec = spec
        self.bindings = bindings
        self.record = record
        self.shards = shards
        self.invocation_for = invocation_for
        self.policy = policy or spec.retries
        self.keep = keep
        self.interactive = interactive
        self.input_manifests = input_manifests
        self.earlier_reason = earlier_reason
        self.notices: list[str] = []  # for the user: see Executor.resume
        self.tracker = Tracker()
        self.counts = Counts()
        self.stop_new = threading.Event()
        self.signal: int | None = None
        self.reason: str | None = None  # why the run stopped early (fail-fast, deadline)
        self._reason_lock = threading.Lock()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._on_end: Callable[[], None] | None = None
        self._stoppers: list[threading.Thread] = []
        self.outputs = staging.Outputs(
            spec,
            bindings,
            cache=services.cache,
            commit_lock=services.commit_lock,
            store=services.store,
            run_id=record.run_id,
        )
        self.task_size = 1  # the most shards a container runs (packing/planner.py), set at launch

    @property
    def id(self) -> str:
        return self.record.run_id

    @property
    def image(self) -> ImageRecord:
        return self.record.image

    # -- the life of a run -------------------------------------------------------------

    def launch(
        self,
        scheduler: Scheduler,
        tasks: list[Task],
        parallel: int,
        *,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """Run `tasks` on `scheduler` in the background; `on_end` is called once when the run
        has ended, its record written or not (the Executor lets go of the run's lock)."""
        self._on_end = on_end
        self.task_size = planner.task_size(tasks)
        self._thread = threading.Thread(
            target=self._drive,
            args=(scheduler, tasks, parallel),
            name=f"run-{self.id}",
            daemon=True,
        )
        if self.record.deadline_s is not None:
            # Counted from here, once the image is ready: a resumed run gets a fresh deadline.
            deadline_at = self.services.timer() + self.record.deadline_s
            threading.Thread(
                target=self._watch, args=(deadline_at,), name=f"deadline-{self.id}", daemon=True
            ).start()
        self._thread.start()

    def _watch(self, deadline_at: float) -> None:
        """Stop the run when its deadline passes (on the monotonic timer, checked often)."""
        while not self._ended.is_set():
            left = deadline_at - self.services.timer()
            if left <= 0:
                self.stop(
                    f"{DEADLINE_EXCEEDED}: the run's deadline of {self.record.deadline_s:g} s "
                    "passed"
                )
                return
            self._ended.wait(min(left, 0.2))

    def _drive(self, scheduler: Scheduler, tasks: list[Task], parallel: int) -> None:
        try:
            scheduler.run(self, tasks, parallel)
            self._ended.set()
            self._result = self._finish()
        except BaseException as exc:  # handed to whoever waits, never lost in a thread
            self._error = exc
        finally:
            self._ended.set()
            if self._on_end is not None:
                self._on_end()

    def wait(self) -> RunResult:
        """Block until the run has ended and its record is final; never raises for shards."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(timeout=0.2)  # short joins let signal handlers run
        if self._error is not None:
            raise self._error
        assert self._result is not None, "the run was never launched"
        return self._result

    def result(self) -> RunResult:
        """wait(), then raise ShardFailed (or RunError) unless every shard succeeded."""
        return self.wait().check()

    def exception(self) -> RunError | None:
        """What result() would raise, or None."""
        try:
            self.result()
        except RunError as exc:
            return exc
        return None

    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    @property
    def state(self) -> str:
        return self._result.record.state if self._result else "running"

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Start no new shard and stop the running containers (SIGTERM, grace, kill).

        Safe to call from a signal handler and more than once.
        """
        if self.signal is None:
            self.signal = signum
        self._halt()

    def stop(self, reason: str) -> None:
        """Fail the run now for `reason`: as cancel(), but the run is recorded as failed
        with that reason (fail-fast, deadline). The first reason wins."""
        with self._reason_lock:
            if self.reason is not None or self.signal is not None:
                return
            self.reason = reason
        self._halt()

    def _halt(self) -> None:
        self.tracker.cancelled.set()
        for cid in self.tracker.running():
            stopper = threading.Thread(target=self._stop, args=(cid,), daemon=True)
            stopper.start()
            self._stoppers.append(stopper)

    def _stop(self, cid: str) -> None:
        with contextlib.suppress(EngineError):
            self.services.engine.stop(cid, grace_s=self.record.grace_s)

    def stopping(self) -> bool:
        """No new shard should start: cancelled, or too many shards failed."""
        return self.tracker.cancelled.is_set() or self.stop_new.is_set()

    # -- one shard ---------------------------------------------------------------------

    def run_shard(self, shard: Shard) -> ShardRecord:
        """Run one shard to its end (cache, attempts, commit) and record it."""
        store = self.services.store
        staging_dir = store.staging(self.id, shard.index)
        self.started(shard)
        base = self.base_record(shard, attempts=self.earlier_attempts(shard))
        inv = base.invocation
        # Losing a 'running' record to a machine crash only means the shard runs again.
        store.write_shard(base, durable=False)
        done = self.from_cache(shard, base, staging_dir)
        if done is not None:
            return done
        with self.services.slots or contextlib.nullcontext():
            attempts = self._attempts(inv, staging_dir, shard)
        return self.end_shard(shard, base, attempts, staging_dir)

    def from_cache(self, shard: Shard, base: ShardRecord, staging_dir: Path) -> ShardRecord | None:
        """The shard's final record when the cache decides it (a hit, or one that cannot be
        committed here); None when it must run."""
        store = self.services.store
        hit = self.outputs.restore(base.invocation, staging_dir, self.services.clock())
        if hit is not None and hit.ok:
            final = base.model_copy(
                update={
                    "state": "succeeded",
                    "outputs_committed": True,
                    "cached": True,
                    "exit_code": 0,
                    "returned": self.outputs.taken(shard.index),
                }
            )
            store.write_shard(final)
            self._count(shard, "succeeded", None)
            return final
        if hit is not None:  # a cached result that cannot be committed here
            staging.discard(staging_dir)
            final = with_attempts(base, "failed", [hit], store.log_path(self.id, shard.index))
            store.write_shard(final.model_copy(update={"cached": True}))
            self._count(shard, "failed", hit)
            return final
        return None

    def end_shard(
        self,
        shard: Shard,
        base: ShardRecord,
        attempts: list[Attempt],
        staging_dir: Path,
        *,
        durable: bool = True,
    ) -> ShardRecord:
        """Record a shard whose attempts have ended (here or in a packed batch) and count it.

        `durable=False` leaves the fsync to the caller (a packed batch syncs once at its end).
        """
        store = self.services.store
        last = attempts[-1]
        state = shard_state(last)
        if not last.ok:
            staging.discard(staging_dir)
        if last.failure == Failure.CANCELLED and self.reason is not None:
            attempts[-1] = last = replace(last, message=f"stopped: {self.reason}")
        final = with_attempts(base, state, attempts, store.log_path(self.id, shard.index))
        final = final.model_copy(update={"returned": self.outputs.taken(shard.index)})
        store.write_shard(final, durable=durable)
        self._count(shard, state, last)
        return final

    def started(self, shard: Shard) -> None:
        """Say that a shard started (a packed one: when its batch reports it)."""
        self.services.on_event(
            ShardEvent("started", shard.index, shard.count, "running", None, self.id)
        )

    def run_shard_safely(self, shard: Shard) -> None:
        """run_shard, recording a shard that broke outside its container (a disk error, say)."""
        try:
            self.run_shard(shard)
        except Exception as exc:  # one shard must not stop its worker
            self.crashed(shard, exc)

    def crashed(self, shard: Shard, exc: Exception) -> None:
        """Record a shard that broke outside its container as failed (engine_error)."""
        store = self.services.store
        now = self.services.clock()
        attempt = Attempt(
            number=1,
            started_at=now,
            ended_at=now,
            failure=Failure.ENGINE_ERROR,
            message=f"{type(exc).__name__}: {exc}",
        )
        with contextlib.suppress(Exception):
            staging.discard(store.staging(self.id, shard.index))
            log_path = store.log_path(self.id, shard.index)
            base = self.base_record(shard, attempts=[])
            store.write_shard(with_attempts(base, "failed", [attempt], log_path))
        self._count(shard, "failed", attempt)

    def base_record(self, shard: Shard, *, attempts: list[AttemptRecord]) -> ShardRecord:
        """A shard's Invocation inside its 'running' record."""
        return ShardRecord(
            run_id=self.id,
            index=shard.index,
            value=shard.value,
            state="running",
            log_path=str(self.services.store.log_path(self.id, shard.index)),
            invocation=self.invocation_for(shard),
            attempts=attempts,
            input_manifests=self.input_manifests,
        )

    def earlier_attempts(self, shard: Shard) -> list[AttemptRecord]:
        """A resumed shard keeps the attempts of the runs before, so TRIES tells the truth."""
        path = self.services.store.shard_path(self.id, shard.index)
        if not path.is_file():
            return []
        try:
            return list(load_model(path, ShardRecord).attempts)
        except RecordError:
            return []  # left empty by a machine crash: the shard simply runs again

    def ended_elsewhere(self, shard: Shard, record: ShardRecord) -> None:
        """Count a shard that ran in another process (a cluster task), from its final record."""
        attempt = last_attempt(record)
        if attempt is not None:
            self._fail_fast(shard, attempt)  # across a cluster's tasks too
        self._count(shard, record.state, attempt)

    def refused(self, reason: str) -> None:
        """Record the run as failed for `reason` before any of its shards ran (its image
        cannot run packed shards, the cluster refused its array); the caller raises. A
        resume keeps the reason the run had stopped for: the refusal is the caller's error,
        and the shards are as that reason left them."""
        kept = self.earlier_reason or reason
        failed = self.record.model_copy(
            update={"state": "failed", "reason": kept, "ended_at": self.services.clock()}
        )
        self.services.store.write_run(failed)

    def settle(self) -> RunResult:
        """Write the final record of a run whose shards ended elsewhere, with no process
        following it (a detached cluster run): what the run's own end would write."""
        return self._finish()

    def _count(self, shard: Shard, state: ShardState, last: Attempt | None) -> None:
        n_state = self.counts.add(state)
        limit = self.spec.array.max_failed_shards if self.spec.array else None
        if state == "failed" and limit and n_state >= limit:
            self.stop_new.set()
        self.services.on_event(
            ShardEvent("finished", shard.index, shard.count, state, last, self.id)
        )

    def _attempts(self, inv: Invocation, staging_dir: Path, shard: Shard) -> list[Attempt]:
        if self.interactive is not None:
            self.outputs.prepare(staging_dir, inv)
            now = self.services.clock()
            self.tracker.add(inv.name)  # by name: a cancel stops it as any other container
            try:
                attempt = self.interactive(inv, Attempt(number=1, started_at=now, ended_at=now))
            finally:
                self.tracker.discard(inv.name)
            return [self.outputs.commit(attempt, inv, staging_dir) if attempt.ok else attempt]
        return run_with_retries(
            self.services.engine,
            inv,
            self.policy,
            secrets=self.services.secrets,
            tracker=self.tracker,
            clock=self.services.clock,
            timer=self.services.timer,
            sleep=self.services.sleep_for(self.tracker),
            log_for=lambda n: self.log_sink(shard.index, n),
            before=lambda: self.outputs.prepare(staging_dir, inv),
            after=lambda a: self.outputs.commit(a, inv, staging_dir),
            on_attempt=lambda a, retry: self.retrying(shard, a, retry),
            grace_s=self.record.grace_s,
            keep=self.keep,
            outputs_under=[staging_dir],
        )

    # -- steps of a shard's life, shared with a packed batch (run/packing/batch.py) ------

    def _fail_fast(self, shard: Shard, a: Attempt) -> None:
        if fails_run(self.policy, a):
            self.stop(f"{FAIL_FAST}: shard {shard.index} exited with {a.exit_code}")

    def retrying(self, shard: Shard, a: Attempt, retry: bool) -> None:
        """An attempt ended: fail the run fast if its exit says so; say a retry comes."""
        self._fail_fast(shard, a)
        if retry:
            self.services.on_event(
                ShardEvent("retrying", shard.index, shard.count, "running", a, self.id)
            )

    def log_sink(self, index: int, number: int) -> LogSink:
        """The log of attempt `number` of shard `index` (earlier attempts' logs kept)."""
        path = self.services.store.log_path(self.id, index)
        if number > 1:  # keep each earlier attempt's log beside the last one
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(f"{path.stem}.attempt{number - 1}.log"))
        on_line = self.services.on_line
        sink = (lambda stream, line: on_line(index, stream, line)) if on_line else None
        return LogSink(
            path,
            limit_bytes=self.record.log_limit_bytes,
            on_line=sink,
            redact=list(self.services.secrets.values()),
        )

    # -- the end -----------------------------------------------------------------------

    def _finish(self) -> RunResult:
        """Sweep, count the selected shards' records, and write the final run record."""
        for stopper in self._stoppers:
            stopper.join(timeout=60)
        if not self.keep:  # --keep leaves the replayed container for the user to inspect
            self.services.sweep(self.id)
        store = self.services.store
        wanted = set(self.record.shards_selected or range(self.record.shard_count))
        tally = Tally.of(store.iter_shards(self.id), wanted)  # one at a time: 10k shards fit
        state = tally.state(
            stopped=self.reason is not None, cancelled=self.tracker.cancelled.is_set()
        )
        record = self.record.model_copy(
            update={
                "state": state,
                "exit_code": tally.exit_code,
                "signal": self.signal if state == "cancelled" else None,
                "reason": self.reason if state == "failed" else None,
                "counts": tally.counts,
                "ended_at": self.services.clock(),
            }
        )
        self.record = record
        path = store.write_run(record)
        return RunResult(
            record=record,
            record_path=path,
            failed=tally.failed,
            values=tally.values,
            near_limit=tally.near_limit,
            peak_memory_bytes=tally.peak_memory_bytes,
        )
