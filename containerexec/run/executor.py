"""One module run: resolve the image once, run shards on <= max_parallel workers, commit, record."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets as random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from containerexec.engine.base import Engine, Progress
from containerexec.environment import images
from containerexec.errors import EngineError, ImageError, RecordError, UsageError
from containerexec.labels import LABEL_RUN
from containerexec.model import arrays
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import ModuleSpec
from containerexec.run import staging as mounts
from containerexec.run.logs import DEFAULT_LIMIT_BYTES, LogSink
from containerexec.run.runner import Attempt, Failure, Tracker, run_with_retries
from containerexec.store import manifests
from containerexec.store.records import (
    AttemptRecord,
    FileEntry,
    ImageRecord,
    RunRecord,
    RunStore,
    ShardRecord,
    ShardState,
    load_model,
)

MANIFEST_HASH_BYTES = 1 << 30


@dataclass(frozen=True)
class RunOptions:
    """How to run; everything here is a flag of `containerexec run`."""

    max_parallel: int | None = None
    shards: str | None = None
    resume: str | None = None
    pull: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    grace_s: float = 5.0
    log_limit_bytes: int = DEFAULT_LIMIT_BYTES
    user: str | None = None
    pipeline_run: str | None = None
    run_id: str | None = None


class ShardCache(Protocol):
    """Where succeeded shards' outputs are kept by cache key (see cache.py)."""

    def restore(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> bool:
        """Fill `staging` from a checked entry for this shard's key; False on a miss."""
        ...

    def save(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> None:
        """Keep a copy of a succeeded shard's staged outputs, atomically."""
        ...


@dataclass(frozen=True)
class ShardEvent:
    """Progress of one shard, for displays."""

    kind: Literal["planned", "started", "retrying", "finished", "skipped"]
    index: int
    count: int
    state: ShardState | None = None
    attempt: Attempt | None = None


@dataclass
class RunResult:
    record: RunRecord
    record_path: Path
    failed: list[ShardRecord]
    exit_code: int


class Counts:
    """Shard counters shared by the workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_state: dict[str, int] = {}

    def add(self, state: str) -> int:
        with self.lock:
            self.by_state[state] = self.by_state.get(state, 0) + 1
            return self.by_state[state]


class Executor:
    """Runs module specs on an Engine and records every run in a RunStore."""

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        *,
        secrets: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        on_event: Callable[[ShardEvent], None] | None = None,
        on_line: Callable[[int, str, str], None] | None = None,
        on_build_log: Callable[[str], None] | None = None,
        on_pull_progress: Progress | None = None,
        cache: ShardCache | None = None,
        slots: threading.Semaphore | None = None,
    ) -> None:
        """`cache` skips shards whose key is unchanged; `slots` bounds containers across
        several executors (a pipeline's engine-wide limit)."""
        self.engine = engine
        self.store = store
        self.secrets = dict(secrets or {})
        self.clock = clock
        self.tracker = Tracker()
        self._sleep = sleep
        self.on_event = on_event or (lambda e: None)
        self.on_line = on_line
        self.on_build_log = on_build_log
        self.on_pull_progress = on_pull_progress
        self.signal: int | None = None
        self.grace_s = 5.0
        self._commit_lock = threading.Lock()
        self._stoppers: list[threading.Thread] = []
        self.cache = cache
        self.slots = slots

    def sleep(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self.tracker.cancelled.wait(seconds)  # a cancel cuts a backoff short

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Start no new shard and stop the running containers (SIGTERM, grace, kill).

        Safe to call from a signal handler and more than once.
        """
        if self.signal is None:
            self.signal = signum
        self.tracker.cancelled.set()
        for cid in self.tracker.running():
            t = threading.Thread(target=self._stop, args=(cid,), daemon=True)
            t.start()
            self._stoppers.append(t)

    def _stop(self, cid: str) -> None:
        with contextlib.suppress(EngineError):
            self.engine.stop(cid, grace_s=self.grace_s)

    def run(
        self,
        spec: ModuleSpec,
        bindings: Bindings,
        *,
        spec_path: Path | None,
        options: RunOptions | None = None,
    ) -> RunResult:
        """Run every selected shard of `spec` that has not succeeded yet; record the run."""
        opts = options or RunOptions()
        self.grace_s = opts.grace_s
        missing = [n for n in spec.secrets if n not in self.secrets]
        if missing:
            raise UsageError(
                f"module '{spec.name}': secret '{missing[0]}' is not set; export it "
                "in the environment that runs containerexec"
            )
        shards = arrays.expand(spec.array, bindings.inputs)
        selected = arrays.select(shards, opts.shards)
        prev = self.store.load_run(opts.resume) if opts.resume else None
        if prev is not None and prev.module != spec.name:
            raise UsageError(
                f"--resume {opts.resume}: that run is of module '{prev.module}', not '{spec.name}'"
            )
        run_id = prev.run_id if prev else opts.run_id or new_run_id(spec.name, self.clock())
        with self.store.lock(run_id):
            return self._run_locked(spec, bindings, spec_path, opts, run_id, prev, shards, selected)

    def _run_locked(
        self,
        spec: ModuleSpec,
        bindings: Bindings,
        spec_path: Path | None,
        opts: RunOptions,
        run_id: str,
        prev: RunRecord | None,
        shards: list[Shard],
        selected: list[Shard],
    ) -> RunResult:
        if prev is not None:
            self.sweep(run_id)  # containers a killed executor left behind
            image = prev.image
            self._ensure_image(spec.name, image)
        else:
            spec_dir = spec_path.parent if spec_path else Path.cwd()
            image = images.resolve(
                self.engine,
                spec,
                spec_dir,
                pull=opts.pull,
                sleep=self.sleep,
                on_log=self.on_build_log,
                on_progress=self.on_pull_progress,
            )
        done = {
            r.index
            for r in self.store.iter_shards(run_id, skip_unreadable=True)
            if r.state == "succeeded" and r.outputs_committed
        }
        todo = [s for s in selected if s.index not in done]
        self.on_event(ShardEvent("planned", -1, len(selected)))
        for s in selected:
            if s.index in done:
                self.on_event(ShardEvent("skipped", s.index, len(shards), "succeeded"))
        default_par = (spec.array.max_parallel if spec.array else None) or os.cpu_count() or 1
        parallel = max(1, min(opts.max_parallel or default_par, max(len(todo), 1)))
        record = RunRecord(
            run_id=run_id,
            module=spec.name,
            version=spec.version,
            spec_path=str(spec_path) if spec_path else None,
            spec=spec.model_dump(mode="json", exclude_defaults=False),
            image=image,
            inputs=bindings.inputs,
            outputs=bindings.outputs,
            input_manifests=prev.input_manifests if prev else input_manifests(spec, bindings),
            secret_names=sorted(spec.secrets),
            shard_count=len(shards),
            shards_selected=[s.index for s in selected] if opts.shards else None,
            max_parallel=parallel,
            state="running",
            started_at=prev.started_at if prev else self.clock(),
            host=socket.gethostname(),
            pid=os.getpid(),
            pipeline_run=opts.pipeline_run,
        )
        self.store.write_run(record)
        counts = Counts()
        counts.by_state["succeeded"] = len(done & {s.index for s in selected})
        ctx = _RunContext(spec, bindings, record, image, opts, counts)
        self._work(ctx, todo, parallel)
        return self._finish(ctx, selected)

    def _work(self, ctx: _RunContext, todo: list[Shard], parallel: int) -> None:
        queue: Iterator[Shard] = iter(todo)
        take = threading.Lock()

        def worker() -> None:
            while not (self.tracker.cancelled.is_set() or ctx.stop_new.is_set()):
                with take:
                    shard = next(queue, None)
                if shard is None:
                    return
                try:
                    self._shard(ctx, shard)
                except Exception as exc:  # one shard must not stop its worker
                    self._crashed(ctx, shard, exc)

        threads = [
            threading.Thread(target=worker, name=f"shard-worker-{i}", daemon=True)
            for i in range(parallel)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)  # short joins let signal handlers run
        for t in self._stoppers:
            t.join(timeout=60)

    def _shard(self, ctx: _RunContext, shard: Shard) -> None:
        run_id = ctx.record.run_id
        staging = self.store.staging(run_id, shard.index)
        self.on_event(ShardEvent("started", shard.index, shard.count, "running"))
        base = self._base_record(ctx, shard, attempts=self._earlier_attempts(ctx, shard))
        inv = base.invocation
        # Losing a 'running' record to a machine crash only means the shard runs again.
        self.store.write_shard(base, durable=False)
        if self.cache is not None and ctx.spec.cache and self._restore(ctx, inv, staging, base):
            return
        with self.slots or contextlib.nullcontext():
            attempts = self._attempts(ctx, inv, staging, shard)
        last = attempts[-1]
        state: ShardState = (
            "succeeded"
            if last.ok
            else "cancelled"
            if last.failure == Failure.CANCELLED
            else "failed"
        )
        if not last.ok:
            mounts.discard(staging)
        final = replace_record(base, state, attempts, self.store.log_path(run_id, shard.index))
        self.store.write_shard(final)
        self._count(ctx, shard, state, last)

    def _crashed(self, ctx: _RunContext, shard: Shard, exc: Exception) -> None:
        """Record a shard that failed outside its container (a disk error, say) as failed."""
        run_id = ctx.record.run_id
        now = self.clock()
        attempt = Attempt(
            number=1,
            started_at=now,
            ended_at=now,
            failure=Failure.ENGINE_ERROR,
            message=f"{type(exc).__name__}: {exc}",
        )
        with contextlib.suppress(Exception):
            mounts.discard(self.store.staging(run_id, shard.index))
            log_path = self.store.log_path(run_id, shard.index)
            base = self._base_record(ctx, shard, attempts=[])
            self.store.write_shard(replace_record(base, "failed", [attempt], log_path))
        self._count(ctx, shard, "failed", attempt)

    def _base_record(
        self, ctx: _RunContext, shard: Shard, *, attempts: list[AttemptRecord]
    ) -> ShardRecord:
        """A shard's Invocation (pure: resolve) inside its 'running' record."""
        run_id = ctx.record.run_id
        inv = resolve(
            ctx.spec,
            ctx.bindings,
            shard,
            run_id=run_id,
            image=ctx.image.pinned,
            staging=self.store.staging(run_id, shard.index),
            user=ctx.opts.user or f"{os.getuid()}:{os.getgid()}",
            labels=dict(ctx.opts.labels),
        )
        return ShardRecord(
            run_id=run_id,
            index=shard.index,
            value=shard.value,
            state="running",
            log_path=str(self.store.log_path(run_id, shard.index)),
            invocation=inv,
            attempts=attempts,
        )

    def _earlier_attempts(self, ctx: _RunContext, shard: Shard) -> list[AttemptRecord]:
        """A resumed shard keeps the attempts of the runs before, so TRIES tells the truth."""
        path = self.store.shard_path(ctx.record.run_id, shard.index)
        if ctx.opts.resume is None or not path.is_file():
            return []
        try:
            return list(load_model(path, ShardRecord).attempts)
        except RecordError:
            return []  # left empty by a machine crash: the shard simply runs again

    def _restore(self, ctx: _RunContext, inv: Invocation, staging: Path, base: ShardRecord) -> bool:
        assert self.cache is not None
        mounts.prepare(staging, ctx.spec)
        if not self.cache.restore(ctx.spec, ctx.bindings, inv, staging):
            return False
        with self._commit_lock:
            mounts.commit(staging, ctx.spec, ctx.bindings)
        self.store.write_shard(
            base.model_copy(
                update={
                    "state": "succeeded",
                    "outputs_committed": True,
                    "cached": True,
                    "exit_code": 0,
                }
            )
        )
        self._count(
            ctx, Shard(inv.shard_index, inv.shard_value, inv.shard_count), "succeeded", None
        )
        return True

    def _count(
        self, ctx: _RunContext, shard: Shard, state: ShardState, last: Attempt | None
    ) -> None:
        n_state = ctx.counts.add(state)
        limit = ctx.spec.array.max_failed_shards if ctx.spec.array else None
        if state == "failed" and limit and n_state >= limit:
            ctx.stop_new.set()
        self.on_event(ShardEvent("finished", shard.index, shard.count, state, last))

    def _attempts(
        self, ctx: _RunContext, inv: Invocation, staging: Path, shard: Shard
    ) -> list[Attempt]:
        run_id = ctx.record.run_id
        return run_with_retries(
            self.engine,
            inv,
            ctx.spec.retries,
            secrets=self.secrets,
            tracker=self.tracker,
            clock=self.clock,
            sleep=self.sleep,
            log_for=lambda n: self._log(run_id, shard.index, n, ctx),
            before=lambda: mounts.prepare(staging, ctx.spec),
            after=lambda a: self._commit(a, inv, staging, ctx),
            on_attempt=lambda a, retry: self._retrying(shard, a, retry),
            grace_s=ctx.opts.grace_s,
        )

    def _retrying(self, shard: Shard, a: Attempt, retry: bool) -> None:
        if retry:
            self.on_event(ShardEvent("retrying", shard.index, shard.count, "running", a))

    def _log(self, run_id: str, index: int, number: int, ctx: _RunContext) -> LogSink:
        path = self.store.log_path(run_id, index)
        if number > 1:  # keep each earlier attempt's log beside the last one
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(f"{path.stem}.attempt{number - 1}.log"))
        on_line = self.on_line
        sink = (lambda stream, line: on_line(index, stream, line)) if on_line else None
        return LogSink(
            path,
            limit_bytes=ctx.opts.log_limit_bytes,
            on_line=sink,
            redact=list(self.secrets.values()),
        )

    def _commit(self, a: Attempt, inv: Invocation, staging: Path, ctx: _RunContext) -> Attempt:
        try:
            mounts.check(staging, ctx.spec, ctx.bindings)
            if self.cache is not None and ctx.spec.cache:
                self.cache.save(ctx.spec, ctx.bindings, inv, staging)
            with self._commit_lock:
                mounts.commit(staging, ctx.spec, ctx.bindings)
        except mounts.OutputsMissing as exc:
            return replace(a, failure=Failure.OUTPUTS_MISSING, message=str(exc))
        except OSError as exc:
            kind = Failure.NO_SPACE if exc.errno == errno.ENOSPC else Failure.ENGINE_ERROR
            where = ", ".join(ctx.bindings.outputs.values())
            return replace(
                a, failure=kind, message=f"committing outputs to {where}: {exc.strerror or exc}"
            )
        return a

    def _ensure_image(self, module: str, image: ImageRecord) -> None:
        """A resumed run uses its pinned image: pull it by digest if it is gone from here."""
        if self.engine.inspect_image(image.pinned) is not None:
            return
        if image.digest is None:
            raise ImageError(
                module,
                image.pinned,
                "the image this run used is no longer on "
                "the engine and was never pushed; start a new run instead of "
                "resuming",
            )
        images.pull_with_retries(self.engine, module, image.digest, sleep=self.sleep)

    def sweep(self, run_id: str) -> int:
        """Remove every container labelled with this run; returns how many."""
        found = self.engine.containers({LABEL_RUN: run_id})
        for c in found:
            self.engine.remove(c.id)
        return len(found)

    def _finish(self, ctx: _RunContext, selected: list[Shard]) -> RunResult:
        self.sweep(ctx.record.run_id)
        wanted = {s.index for s in selected}
        by_state: dict[str, int] = {}
        failed: list[ShardRecord] = []
        for rec in self.store.iter_shards(ctx.record.run_id):  # one at a time: 10k shards fit
            if rec.index in wanted:
                by_state[rec.state] = by_state.get(rec.state, 0) + 1
                if rec.state == "failed":
                    failed.append(rec)
        missing = len(wanted) - sum(by_state.values())
        if missing:
            by_state["pending"] = missing
        counts = dict(sorted(by_state.items()))
        if self.tracker.cancelled.is_set() and counts.get("succeeded", 0) < len(wanted):
            state, code = "cancelled", 128 + (self.signal or signal.SIGINT)
        elif failed or counts.get("succeeded", 0) < len(wanted):
            state = "failed"
            code = 1
            if ctx.spec.array is None and failed and failed[0].exit_code not in (None, 0):
                code = int(failed[0].exit_code or 1)  # a single run exits as its command did
        else:
            state, code = "succeeded", 0
        record = ctx.record.model_copy(
            update={"state": state, "exit_code": code, "counts": counts, "ended_at": self.clock()}
        )
        path = self.store.write_run(record)
        return RunResult(record=record, record_path=path, failed=failed, exit_code=code)


@dataclass
class _RunContext:
    spec: ModuleSpec
    bindings: Bindings
    record: RunRecord
    image: ImageRecord
    opts: RunOptions
    counts: Counts
    stop_new: threading.Event = field(default_factory=threading.Event)


def replace_record(
    base: ShardRecord, state: ShardState, attempts: list[Attempt], log_path: Path
) -> ShardRecord:
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
                    )
                    for a in attempts
                ),
            ],
        }
    )


def new_run_id(module: str, now: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{module}-{stamp}-{random.token_hex(3)}"


def input_manifests(spec: ModuleSpec, bindings: Bindings) -> dict[str, list[FileEntry]]:
    """For each file or directory input: every file's relative path, size and sha256.

    Content past CONTAINEREXEC_MANIFEST_HASH_BYTES per input (default 1 GiB) is
    recorded by size only: repro then checks those files' sizes, not their bytes.
    """
    limit = int(os.environ.get("CONTAINEREXEC_MANIFEST_HASH_BYTES", str(MANIFEST_HASH_BYTES)))
    out = {}
    for name, value in bindings.inputs.items():
        if spec.inputs[name].type in ("file", "directory"):
            entries = manifests.manifest(value, hash_limit_bytes=limit)
            out[name] = [FileEntry(path=p, size=n, sha256=h) for p, n, h in entries]
    return out
