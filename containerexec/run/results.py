"""What a run and its shards come to: progress events, the result, the failure a caller
gets, and a shard's record once its attempts have ended."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from containerexec.errors import RunError, ShardFailed
from containerexec.run.runner import Attempt, Failure
from containerexec.run.trace import NearLimit, largest_peak, near_limit
from containerexec.store.records import (
    AttemptRecord,
    RunRecord,
    RunState,
    ShardRecord,
    ShardState,
)


@dataclass(frozen=True)
class ShardEvent:
    """Progress of one shard, for displays and for `Module.run(progress=callable)`.

    `kind`: 'planned' (index -1, `count` shards selected), 'started', 'retrying' (the
    failed `attempt`), 'finished' (its `state`; `attempt` None when the cache served
    it), 'skipped' (a resume: it had succeeded). Called from the run's worker threads.
    """

    kind: Literal["planned", "started", "retrying", "finished", "skipped"]
    index: int
    count: int
    state: ShardState | None = None
    attempt: Attempt | None = None
    run_id: str | None = None


@dataclass
class RunResult:
    """How a run ended: its final record, its failed shards, and what each shard returned."""

    record: RunRecord
    record_path: Path
    failed: list[ShardRecord]
    values: list[Any] = field(default_factory=list)  # returned by each shard, in shard order
    near_limit: list[NearLimit] = field(default_factory=list)  # memory peaks past 90 %
    peak_memory_bytes: int | None = None  # the largest peak of any attempt

    @property
    def state(self) -> str:
        return self.record.state

    def check(self) -> RunResult:
        """Return self when every selected shard succeeded; else raise what went wrong.

        Raises:
            ShardFailed: for the first failed shard, with its facts as fields.
            RunError: when the run was cancelled or shards never ran.
        """
        if self.failed:
            raise shard_failed(self.record, self.failed[0], len(self.failed))
        if self.record.state != "succeeded":
            counts = ", ".join(f"{n} {s}" for s, n in self.record.counts.items())
            why = f": {self.record.reason}" if self.record.reason else ""
            raise RunError(
                f"run {self.record.run_id} of module '{self.record.module}' "
                f"{self.record.state}{why} ({counts}); see: containerexec runs show "
                f"{self.record.run_id}"
            )
        return self


def shard_failed(run: RunRecord, shard: ShardRecord, failed_shards: int = 1) -> ShardFailed:
    """The exception (and failure report) of one failed shard, from its records."""
    return ShardFailed(
        module=run.module,
        run_id=run.run_id,
        shard=shard.index,
        shard_count=run.shard_count,
        is_array=bool(run.spec.get("array")),
        image=shard.invocation.image,
        argv=list(shard.invocation.argv),
        returncode=shard.exit_code,
        failure=shard.failure or "",
        message=shard.message,
        attempts=len(shard.attempts),
        log_tail=list(shard.log_tail),
        stderr_tail=list(shard.stderr_tail),
        log_path=shard.log_path,
        failed_shards=failed_shards,
    )


class Counts:
    """Shard counters shared by the workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_state: dict[str, int] = {}

    def add(self, state: str) -> int:
        with self.lock:
            self.by_state[state] = self.by_state.get(state, 0) + 1
            return self.by_state[state]


def with_attempts(
    base: ShardRecord, state: ShardState, attempts: list[Attempt], log_path: Path
) -> ShardRecord:
    """A shard's record once its attempts have ended: the last one decides its fields."""
    last = attempts[-1]
    return base.model_copy(
        update={
            "state": state,
            "failure": str(last.failure) if last.failure else None,
            "exit_code": last.exit_code,
            "oom_killed": last.oom_killed,
            "message": last.message,
            "outputs_committed": last.ok,
            "log_tail": last.log_tail,
            "stderr_tail": last.stderr_tail,
            "log_path": str(log_path),
            "attempts": [
                *base.attempts,
                *(
                    AttemptRecord(
                        number=len(base.attempts) + a.number,
                        container_id=a.container_id,
                        started_at=a.started_at,
                        ended_at=a.ended_at,
                        exit_code=a.exit_code,
                        oom_killed=a.oom_killed,
                        failure=str(a.failure) if a.failure else None,
                        message=a.message,
                        counted=a.counted,
                        trace=a.trace,
                    )
                    for a in attempts
                ),
            ],
        }
    )


def last_attempt(record: ShardRecord) -> Attempt | None:
    """The last attempt of a shard that ran elsewhere (a cluster task), from its record."""
    if not record.attempts:
        return None
    last = record.attempts[-1]
    return Attempt(
        number=last.number,
        started_at=last.started_at,
        ended_at=last.ended_at,
        exit_code=last.exit_code,
        failure=Failure(last.failure) if last.failure in set(Failure) else None,
        message=last.message,
    )


@dataclass
class Tally:
    """The selected shards' records of a run, counted for its final record."""

    wanted: int
    counts: dict[str, int]
    failed: list[ShardRecord]
    values: list[Any]
    exit_code: int | None  # the command's own status, where the run is one command
    near_limit: list[NearLimit] = field(default_factory=list)
    peak_memory_bytes: int | None = None

    @classmethod
    def of(cls, records: Iterable[ShardRecord], wanted: set[int]) -> Tally:
        by_state: dict[str, int] = {}
        failed: list[ShardRecord] = []
        sole: ShardRecord | None = None
        values: dict[int, Any] = {}
        near: list[NearLimit] = []
        peak: int | None = None
        for rec in records:
            if rec.index in wanted:
                if (warning := near_limit(rec)) is not None:
                    near.append(warning)
                own = largest_peak([rec])
                peak = own if peak is None or (own is not None and own > peak) else peak
                values[rec.index] = rec.returned
                by_state[rec.state] = by_state.get(rec.state, 0) + 1
                sole = rec
                if rec.state == "failed":
                    failed.append(rec)
        missing = len(wanted) - sum(by_state.values())
        if missing:
            by_state["pending"] = missing
        return cls(
            wanted=len(wanted),
            counts=dict(sorted(by_state.items())),
            failed=failed,
            values=[values.get(i) for i in sorted(wanted)],
            exit_code=sole.exit_code if sole is not None and len(wanted) == 1 else None,
            near_limit=sorted(near, key=lambda n: n.shard),
            peak_memory_bytes=peak,
        )

    def state(self, *, stopped: bool, cancelled: bool) -> RunState:
        """The run's end: `stopped` early for a reason (fail-fast, deadline), or `cancelled`."""
        complete = self.counts.get("succeeded", 0) == self.wanted
        if stopped and not complete:
            return "failed"  # failed fast, or out of time: not a user's cancel
        if cancelled and not complete:
            return "cancelled"
        if self.failed or not complete:
            return "failed"
        return "succeeded"
