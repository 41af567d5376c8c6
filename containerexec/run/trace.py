"""The resource trace of an attempt: sampling a running container's figures (`Sampler`),
and what a run's traces say (the shards near their memory limit, a suggested limit).

The engine gives the figures so far (`Engine.stats`); the cgroup may go with the
container's end, before `wait` returns (Docker on cgroup v1 here), so a thread samples
them while the container runs, often at first and then ten times a second, and the
last sample stands. `CONTAINEREXEC_TRACE=0` turns the sampling off (for bench/trace.py).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from containerexec.engine.base import Engine, Stats
from containerexec.store.records import AttemptTrace, ShardRecord

# Short shards end within the first intervals; then ten reads a second (55 us each here),
# so at most 0.1 s of the end is missed where the cgroup goes with the container.
INTERVALS_S = (0.01, 0.02, 0.05)
EVERY_S = 0.1
NEAR_LIMIT = 0.9  # a peak past this share of the memory limit is warned about
HEADROOM = 1.25  # suggested limit: the largest peak plus 25 %,
ROUND_TO = 16 << 20  # rounded up to a multiple of 16 MiB
# `runs show --trace --sort`: the figure rows are ordered by, largest first ('shard': by index).
SORTS = {
    "peak": "peak_memory_bytes",
    "cpu": "cpu_seconds",
    "wall": "wall_seconds",
    "read": "read_bytes",
    "write": "write_bytes",
    "shard": "",
}


class Sampler:
    """Reads a running container's figures now, then on a thread of its own until `stop`."""

    def __init__(self, engine: Engine, cid: str, *, clock: Callable[[], float]) -> None:
        self.engine, self.cid, self.clock = engine, cid, clock
        self.started = clock()
        self.last: Stats | None = None
        self.peak: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._final: AttemptTrace | None = None
        if self._take():
            self._thread: threading.Thread | None = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        else:
            self._thread = None

    @classmethod
    def start(cls, engine: Engine, cid: str, *, clock: Callable[[], float]) -> Sampler | None:
        """A Sampler of a container that has just started; None when tracing is off."""
        return (
            None if os.environ.get("CONTAINEREXEC_TRACE") == "0" else cls(engine, cid, clock=clock)
        )

    def _take(self) -> bool:
        stats = self.engine.stats(self.cid)
        if stats is None:
            return False
        with self._lock:
            self.last = stats
            for value in (stats.memory_peak_bytes, stats.memory_bytes):
                if value is not None and (self.peak is None or value > self.peak):
                    self.peak = value
        return True

    def _loop(self) -> None:
        i = 0
        while not self._stopped.wait(INTERVALS_S[i] if i < len(INTERVALS_S) else EVERY_S):
            i += 1
            if not self._take():
                return  # the container is gone: the last sample stands

    def snapshot(self, *, wall_s: float | None, packed: bool = False) -> AttemptTrace:
        """The figures so far, with `wall_s` as the wall time."""
        with self._lock:
            s = self.last or Stats()
            return AttemptTrace(
                peak_memory_bytes=self.peak,
                cpu_seconds=s.cpu_seconds,
                wall_seconds=None if wall_s is None else round(wall_s, 3),
                read_bytes=s.read_bytes,
                write_bytes=s.write_bytes,
                packed=packed,
            )

    def stop(self) -> AttemptTrace:
        """End the sampling (once; the container has exited) and return the final figures."""
        if self._final is None:
            self._stopped.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
                self._take()  # where the cgroup outlives the container, the exact end
            self._final = self.snapshot(wall_s=self.clock() - self.started)
        return self._final


def final(sampler: Sampler | None) -> AttemptTrace | None:
    """A container's final figures (the sampling ends); None when none was sampled."""
    return None if sampler is None else sampler.stop()


@dataclass(frozen=True)
class NearLimit:
    """A shard whose attempt's memory peak passed NEAR_LIMIT of its limit."""

    shard: int
    attempt: int
    peak_bytes: int
    limit_bytes: int

    def __str__(self) -> str:
        share = self.peak_bytes / self.limit_bytes
        return (
            f"warning: shard {self.shard} peaked at {mib(self.peak_bytes)} "
            f"({share:.0%} of its memory limit {mib(self.limit_bytes)}) in attempt "
            f"{self.attempt}: raise resources.memory"
        )


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.1f} MiB"


def size(n: int | None) -> str:
    """Bytes in the largest unit that keeps a whole number in front: '512 B', '4.0 MiB'."""
    if n is None:
        return "-"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def near_limit(record: ShardRecord) -> NearLimit | None:
    """The attempt of `record` whose peak came closest to (or past) its limit, if past 90 %."""
    limit = record.invocation.limits.memory_bytes
    if not limit:
        return None
    peaks = [
        (a.trace.peak_memory_bytes, a.number)
        for a in record.attempts
        if a.trace is not None and a.trace.peak_memory_bytes is not None
    ]
    if not peaks:
        return None
    peak, number = max(peaks)
    return NearLimit(record.index, number, peak, limit) if peak >= NEAR_LIMIT * limit else None


def last_trace(record: ShardRecord) -> tuple[int, AttemptTrace] | None:
    """(attempt number, trace) of the last attempt that has one."""
    for a in reversed(record.attempts):
        if a.trace is not None:
            return a.number, a.trace
    return None


def largest_peak(records: Iterable[ShardRecord]) -> int | None:
    """The largest memory peak of any attempt of `records` (p100); None if none is known."""
    peaks = [
        a.trace.peak_memory_bytes
        for r in records
        for a in r.attempts
        if a.trace is not None and a.trace.peak_memory_bytes is not None
    ]
    return max(peaks, default=None)


def suggested_memory(peak: int | None) -> int | None:
    """A memory limit for the largest peak: plus HEADROOM, rounded up to ROUND_TO."""
    if peak is None:
        return None
    return max(1, math.ceil(peak * HEADROOM / ROUND_TO)) * ROUND_TO


def suggestion(peak: int | None) -> str | None:
    """The suggested limit as a line, with its rule; None with no peak recorded."""
    limit = suggested_memory(peak)
    if limit is None:
        return None
    return (
        f"suggested resources.memory: {limit >> 20}m (the largest peak, {mib(peak)}, "
        f"plus {HEADROOM - 1:.0%}, rounded up to a multiple of {ROUND_TO >> 20} MiB)"
    )


def report(run_id: str, shards: list[ShardRecord], sort: str = "peak") -> dict[str, Any]:
    """A run's trace as JSON: each shard's last traced attempt (in `sort` order), the
    warnings, the largest peak and the suggested limit (`runs show --trace --json`)."""
    rows: list[dict[str, Any]] = []
    shards = sorted(shards, key=lambda s: s.index)
    for s in shards:
        number, t = last_trace(s) or (None, AttemptTrace())
        rows.append(
            {
                "shard": s.index,
                "value": s.value,
                "state": s.state,
                "attempt": number,
                "memory_limit_bytes": s.invocation.limits.memory_bytes,
                **t.model_dump(mode="json"),
            }
        )
    if key := SORTS[sort]:
        rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0)))  # unknown figures last
    peak = largest_peak(shards)
    return {
        "run_id": run_id,
        "sort": sort,
        "shards": rows,
        "warnings": [
            {**vars(w), "message": str(w)} for s in shards if (w := near_limit(s)) is not None
        ],
        "largest_peak_memory_bytes": peak,
        "suggested_memory_bytes": suggested_memory(peak),
        "suggestion": suggestion(peak),
    }
