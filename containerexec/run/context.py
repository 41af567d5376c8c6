"""What a run is made with (its RunOptions and first record, the Services an Executor
hands each Run instead of itself), and what its shards, packed batches and placements
see of it: the RunContext.

Nothing below the Run imports it, and a Run reads no Executor internals: the
Executor builds a `Services` value (engine, store, clock, callbacks, the cache and
the locks shared between its runs) and the Run keeps it. A placement (LocalPool,
Slurm), a packed batch and the packing planner are written against `RunContext`,
the part of a Run they use; so the import graph has no circle, annotations included.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from containerexec.engine.base import Engine
from containerexec.errors import UsageError
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec, RetryPolicy
from containerexec.run.cache import ShardCache
from containerexec.run.logs import DEFAULT_LIMIT_BYTES, LogSink
from containerexec.run.results import ShardEvent
from containerexec.run.runner import Attempt, Tracker
from containerexec.run.staging import Outputs
from containerexec.store.records import (
    AttemptRecord,
    EngineRecord,
    ImageRecord,
    RunRecord,
    ShardRecord,
    shared_values,
)
from containerexec.store.tree import RunStore

# A task: the shards one container runs, one after another (one shard: unpacked).
Task = list[Shard]


@dataclass(frozen=True)
class RunOptions:
    """How to run; everything here is a flag of `containerexec run`."""

    max_parallel: int | None = None
    shards: str | None = None
    pull: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    grace_s: float = 5.0
    log_limit_bytes: int = DEFAULT_LIMIT_BYTES
    user: str | None = None
    pipeline_run: str | None = None
    run_id: str | None = None
    default_outputs: Path | None = None  # outputs given no place go here, else in the run
    overwrite: bool = False  # a non-empty -o place is emptied at the run's first commit
    deadline_s: float | None = None  # overrides the spec's resources.deadline

    def record(
        self,
        spec: ModuleSpec,
        bindings: Bindings,
        run_id: str,
        image: ImageRecord,
        shards: list[Shard],
        selected: list[Shard],
        spec_path: Path | None,
        *,
        started_at: float,
        cached: bool,
    ) -> RunRecord:
        """A new run's first record ('running'), as these options and the spec make it."""
        opts = self
        default_par = (spec.array.max_parallel if spec.array else None) or os.cpu_count() or 1
        return RunRecord(
            run_id=run_id,
            module=spec.name,
            version=spec.version,
            spec_path=str(spec_path) if spec_path else None,
            spec=spec.model_dump(mode="json", exclude_defaults=False),
            image=image,
            inputs=bindings.inputs,
            outputs=bindings.outputs,
            secret_names=sorted(spec.secrets),
            shard_count=len(shards),
            shards_selected=[s.index for s in selected] if opts.shards else None,
            max_parallel=max(1, opts.max_parallel or default_par),
            state="running",
            started_at=started_at,
            host=socket.gethostname(),
            pid=os.getpid(),
            pipeline_run=opts.pipeline_run,
            cache=cached,
            labels=dict(opts.labels),
            user=opts.user or f"{os.getuid()}:{os.getgid()}",
            grace_s=opts.grace_s,
            log_limit_bytes=opts.log_limit_bytes,
            deadline_s=opts.deadline_s or spec.resources.deadline,
            shared_env=shared_values(spec.env),
        )


def engine_stamped(engine: Engine, spec: ModuleSpec, record: RunRecord) -> RunRecord:
    """`record` naming the engine its shards run on, once the engine can honour the
    spec's resources here; a cluster's workers read the name and use that engine too.

    Raises:
        UsageError: the spec asks for a limit this engine cannot set on this host.
    """
    ident = engine.identity()
    asked = {"memory": spec.resources.memory, "cpus": spec.resources.cpus}
    for resource, value in asked.items():
        if value and resource in ident.cannot_limit:
            raise UsageError(
                f"module '{spec.name}' sets resources.{resource}, and {ident.name} "
                f"{'rootless ' if ident.rootless else ''}cannot limit {resource} on this host "
                "(cgroup v1, or cgroup v2 without that controller delegated to this user); "
                "remove the limit, or run with a rootful engine (--engine docker)"
            )
    stamp = EngineRecord(name=ident.name, version=ident.version, rootless=ident.rootless)
    return record.model_copy(update={"engine": stamp})


@dataclass(frozen=True)
class Services:
    """What a Run uses of the Executor that started it; shared by all the Executor's runs.

    `sleep` is the injected sleep between retries (None: a wait a cancel cuts short);
    `slots` bounds containers across runs (a pipeline's engine-wide limit);
    `commit_lock` serialises commits into shared output folders; `sweep` removes a
    run's containers by label. `clock` stamps records (wall time); `timer` measures
    durations (a deadline, a wait for the engine) and never jumps with the wall clock.
    """

    engine: Engine
    store: RunStore
    secrets: Mapping[str, str]
    clock: Callable[[], float]
    timer: Callable[[], float]
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
    outputs: Outputs  # a shard's staging folder: prepare, check, cache and commit

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

    def log_sink(self, index: int, number: int) -> LogSink: ...

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
