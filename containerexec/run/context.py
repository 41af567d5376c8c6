"""What shards, packed batches and placements see of a run: the RunContext, and the
Services an Executor hands each Run instead of itself.

Nothing below the Run imports it, and a Run reads no Executor internals: the
Executor builds a `Services` value (engine, store, clock, callbacks, the cache and
the locks shared between its runs) and the Run keeps it. A placement (LocalPool,
Slurm), a packed batch and the packing planner are written against `RunContext`,
the part of a Run they use; so the import graph has no circle, annotations included.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from containerexec.engine.base import Engine
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation
from containerexec.model.spec import ModuleSpec, RetryPolicy
from containerexec.run.logs import LogSink
from containerexec.run.results import ShardEvent
from containerexec.run.runner import Attempt, Tracker
from containerexec.store.records import AttemptRecord, ImageRecord, RunRecord, ShardRecord
from containerexec.store.tree import RunStore

# A task: the shards one container runs, one after another (one shard: unpacked).
Task = list[Shard]


class ShardCache(Protocol):
    """Where succeeded shards' outputs are kept by cache key (see cache.py)."""

    def restore(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> bool:
        """Fill `staging` from a checked entry for this shard's key; False on a miss."""
        ...

    def save(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> None:
        """Keep a copy of a succeeded shard's staged outputs, atomically."""
        ...

    def holds(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation) -> bool:
        """Whether an entry for this shard's key is there (a cheap look, not a check)."""
        ...


@dataclass(frozen=True)
class Services:
    """What a Run uses of the Executor that started it; shared by all the Executor's runs.

    `sleep` is the injected sleep between retries (None: a wait a cancel cuts short);
    `slots` bounds containers across runs (a pipeline's engine-wide limit);
    `commit_lock` serialises commits into shared output folders; `sweep` removes a
    run's containers by label.
    """

    engine: Engine
    store: RunStore
    secrets: Mapping[str, str]
    clock: Callable[[], float]
    sleep: Callable[[float], object] | None
    on_event: Callable[[ShardEvent], None]
    on_line: Callable[[int, str, str], None] | None
    cache: ShardCache | None
    slots: threading.Semaphore | None
    commit_lock: threading.Lock
    sweep: Callable[[str], int]

    def sleep_for(self, tracker: Tracker) -> Callable[[float], object]:
        """The sleep between retries: the injected one, else a wait a cancel cuts short."""
        if self.sleep is not None:
            return self.sleep
        return tracker.cancelled.wait


class RunContext(Protocol):
    """The part of a Run that placements, packed batches and the planner use."""

    services: Services
    spec: ModuleSpec
    bindings: Bindings
    record: RunRecord  # a placement records its cluster jobs here
    policy: RetryPolicy
    tracker: Tracker

    @property
    def id(self) -> str: ...

    @property
    def image(self) -> ImageRecord: ...

    def stopping(self) -> bool:
        """No new shard should start: cancelled, or too many shards failed."""
        ...

    def cancel(self, signum: int = ...) -> None: ...

    def refused(self, reason: str) -> None:
        """Record the run as failed for `reason` before any of its shards ran."""
        ...

    # -- one shard, start to end, here ---------------------------------------------
    def run_shard(self, shard: Shard) -> ShardRecord: ...

    def run_shard_safely(self, shard: Shard) -> None: ...

    def ended_elsewhere(self, shard: Shard, record: ShardRecord) -> None:
        """Count a shard that ran in another process, from its final record."""
        ...

    # -- the steps of a shard's life a packed batch or a placement shares ----------
    def base_record(self, shard: Shard, *, attempts: list[AttemptRecord]) -> ShardRecord: ...

    def earlier_attempts(self, shard: Shard) -> list[AttemptRecord]: ...

    def from_cache(
        self, shard: Shard, base: ShardRecord, staging_dir: Path
    ) -> ShardRecord | None: ...

    def started(self, shard: Shard) -> None: ...

    def prepare(self, staging_dir: Path, inv: Invocation) -> None: ...

    def log_sink(self, index: int, number: int) -> LogSink: ...

    def commit(
        self, a: Attempt, inv: Invocation, staging_dir: Path, *, cached: bool = False
    ) -> Attempt: ...

    def retrying(self, shard: Shard, a: Attempt, retry: bool) -> None: ...

    def end_shard(
        self,
        shard: Shard,
        base: ShardRecord,
        attempts: list[Attempt],
        staging_dir: Path,
        *,
        durable: bool = True,
    ) -> ShardRecord: ...

    def crashed(self, shard: Shard, exc: Exception) -> None: ...
