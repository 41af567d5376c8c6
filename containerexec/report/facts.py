"""Records -> the compact data a report page draws (pure: no clock, no files).

Sized for 10,000 shards: one short array per shard and per attempt, times in seconds
from the run's start, and per failure kind one example log tail for each distinct last
line, so a report of a large failing run stays a few hundred kilobytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from containerexec.model.spec import parse_bytes
from containerexec.report.sources import PipelineRecords, RunRecords, Trace
from containerexec.run.results import shard_failed
from containerexec.store.records import RunRecord, ShardRecord

STATES = ("succeeded", "failed", "cancelled", "running", "pending")
TAIL_LINES = 20  # of an example log per failure signature
LINE_CHARS = 300  # a longer log line is cut
VALUE_CHARS = 80  # a shard value shown in tooltips
SIGNATURES = 12  # distinct last lines shown per failure kind; the rest are counted together
NUMBER = re.compile(r"\d+")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def _resources(run: RunRecord) -> dict[str, Any]:
    found = run.spec.get("resources")  # the recorded spec is plain JSON: check its shape
    return found if isinstance(found, dict) else {}


def memory_limit(run: RunRecord, shards: list[ShardRecord]) -> int | None:
    """The run's memory limit: its spec's resources.memory, else what its containers had."""
    declared = _resources(run).get("memory")
    if declared is not None:
        try:
            return parse_bytes(declared)
        except ValueError:
            pass
    limits = [s.invocation.limits.memory_bytes for s in shards if s.invocation.limits.memory_bytes]
    return max(limits) if limits else None


def _totals(traces: list[Trace | None]) -> list[float | None]:
    """A shard's figures over its attempts: peak memory is the largest, the rest add up;
    None when no attempt recorded that figure."""
    out: list[float | None] = []
    for name in ("peak_memory_bytes", "cpu_seconds", "wall_seconds", "read_bytes", "write_bytes"):
        values = [v for t in traces if t is not None and (v := getattr(t, name)) is not None]
        if not values:
            out.append(None)
        elif name == "peak_memory_bytes":
            out.append(max(values))
        else:
            out.append(_round(sum(values), 3))
    return out


def _kind(shard: ShardRecord) -> str:
    """A failure kind as users tell them apart: 'exit_code 2', 'oom', 'timeout'."""
    failure = shard.failure or "failed"
    if failure == "exit_code" and shard.exit_code is not None:
        return f"exit_code {shard.exit_code}"
    return failure


def _tail(shard: ShardRecord) -> list[str]:
    lines = shard.log_tail or shard.stderr_tail
    return [_cut(line, LINE_CHARS) for line in lines[-TAIL_LINES:]]


def _last_line(shard: ShardRecord) -> str:
    tail = shard.log_tail or shard.stderr_tail
    return _cut(tail[-1].strip(), LINE_CHARS) if tail else shard.message


def _signature(shard: ShardRecord) -> str:
    """The last line with its numbers blanked: 'line 17 of part-00042' and 'line 3 of
    part-00007' are one error."""
    return NUMBER.sub("#", _last_line(shard))


def _index(shard: ShardRecord) -> int:
    return shard.index


def failure_groups(run: RunRecord, failed: list[ShardRecord]) -> list[dict[str, Any]]:
    """Failed shards by kind, most shards first; within a kind, by the last line of their log
    (the error line, usually), each with one example tail and every shard's repro command."""
    by_kind: dict[str, list[ShardRecord]] = defaultdict(list)
    for shard in failed:
        by_kind[_kind(shard)].append(shard)
    groups = []
    for kind, shards in sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        by_line: dict[str, list[ShardRecord]] = defaultdict(list)
        for shard in shards:
            by_line[_signature(shard)].append(shard)
        ordered = sorted(by_line.values(), key=lambda group: (-len(group), group[0].index))
        if len(ordered) > SIGNATURES:
            rest = sorted((s for group in ordered[SIGNATURES - 1 :] for s in group), key=_index)
            ordered = [*ordered[: SIGNATURES - 1], rest]
        signatures = []
        for n, group in enumerate(ordered):
            example = group[0]
            other = n == SIGNATURES - 1 and len(by_line) > SIGNATURES
            signatures.append(
                {
                    "line": "(other last lines)" if other else _last_line(example),
                    "message": _cut(example.message, LINE_CHARS),
                    "example": example.index,
                    "tail": _tail(example),
                    "log": example.log_path,
                    "shards": [s.index for s in group],
                    "repro": [shard_failed(run, s).repro for s in group],
                }
            )
        groups.append({"kind": kind, "count": len(shards), "signatures": signatures})
    return groups


def run_facts(records: RunRecords) -> dict[str, Any]:
    """One run: its summary, one row per shard, and its failures."""
    run = records.run
    t0 = run.started_at
    kinds: dict[str, int] = {"ok": 0}
    rows = []
    values = []
    end = 0.0
    for shard in records.shards:
        attempts = []
        for a in shard.attempts:
            code = kinds.setdefault(a.failure or "ok", len(kinds))
            attempts.append(
                [_round(a.started_at - t0), _round(max(a.ended_at - a.started_at, 0.0)), code]
                + ([a.exit_code] if a.exit_code is not None else [])
            )
            end = max(end, a.ended_at - t0)
        totals = _totals(records.traces.get(shard.index, []))
        state = STATES.index(shard.state) if shard.state in STATES else len(STATES) - 1
        rows.append([shard.index, state, int(shard.cached), *totals, attempts])
        values.append(_cut(shard.value, VALUE_CHARS))
    failed = [s for s in records.shards if s.state == "failed"]
    resources = _resources(run)
    return {
        "id": run.run_id,
        "module": run.module,
        "version": run.version,
        "state": run.state,
        "reason": run.reason,
        "image": run.image.pinned,
        "host": run.host,
        "placement": run.scheduler.kind if run.scheduler else "local",
        "started_at": t0,
        "wall_s": _round((run.ended_at or t0 + end) - t0),
        "end_s": _round(end),
        "shard_count": run.shard_count,
        "counts": run.counts,
        "memory_limit": memory_limit(run, records.shards),
        "cpus": resources.get("cpus"),
        "states": list(STATES),
        "kinds": list(kinds),
        "shards": rows,
        "values": values,
        "failures": failure_groups(run, failed),
    }


def layers(needs: dict[str, set[str]]) -> dict[str, int]:
    """Each job's column in the drawn DAG: the length of the longest path that reaches it."""
    depth: dict[str, int] = {}

    def visit(job: str, seen: frozenset[str]) -> int:
        if job not in depth:
            ups = [u for u in needs.get(job, ()) if u in needs and u not in seen]
            depth[job] = 1 + max((visit(u, seen | {job}) for u in ups), default=-1)
        return depth[job]

    for job in sorted(needs):
        visit(job, frozenset())
    return depth


def job_state(state: str, cached: bool) -> str:
    """A job's state as the DAG shows it: ran, cached, failed, skipped (or still pending)."""
    if state == "succeeded":
        return "cached" if cached else "ran"
    return state


def pipeline_facts(records: PipelineRecords) -> dict[str, Any]:
    """A pipeline run: its jobs laid out as a DAG, each linked to its run's facts."""
    rec = records.pipeline
    depth = layers(records.needs)
    rows: dict[int, int] = defaultdict(int)
    nodes = []
    ordered = sorted(rec.jobs, key=lambda n: (depth.get(n, 0), n))
    for name in ordered:
        job = rec.jobs[name]
        col = depth.get(name, 0)
        nodes.append(
            {
                "name": name,
                "module": job.module,
                "state": job_state(job.state, job.cached),
                "run": job.run_id if name in records.runs else None,
                "shards": job.shards,
                "message": _cut(job.message, LINE_CHARS),
                "col": col,
                "row": rows[col],
            }
        )
        rows[col] += 1
    return {
        "id": rec.id,
        "name": rec.name,
        "version": rec.version,
        "state": rec.state,
        "host": rec.host,
        "started_at": rec.started_at,
        "wall_s": _round((rec.ended_at or rec.started_at) - rec.started_at),
        "edges_from": records.edges_from,
        "nodes": nodes,
        "edges": sorted([up, job] for job, ups in records.needs.items() for up in ups),
        "runs": [run_facts(records.runs[name]) for name in ordered if name in records.runs],
    }
