"""What a report is made of, read from the store: a run's records with each attempt's resource
trace, or a pipeline run's record, its jobs' runs and the edges of its DAG."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from containerexec.errors import RecordError, SpecError, UntrustedInput
from containerexec.model.pipeline import parse_value
from containerexec.model.pipelinecheck import load_pipeline
from containerexec.pipelines.record import PipelineRecord
from containerexec.store.records import SCHEMA_VERSION, RunRecord, ShardRecord, load_model
from containerexec.store.tree import RunStore

TRACE_FIELDS = ("peak_memory_bytes", "cpu_seconds", "wall_seconds", "read_bytes", "write_bytes")


@dataclass(frozen=True)
class Trace:
    """One attempt's resource figures; None where the host could not give one."""

    peak_memory_bytes: float | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    read_bytes: float | None = None
    write_bytes: float | None = None


@dataclass(frozen=True)
class RunRecords:
    run: RunRecord
    shards: list[ShardRecord]
    # shard index -> one entry per attempt, in order (None: that attempt has no trace)
    traces: dict[int, list[Trace | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineRecords:
    pipeline: PipelineRecord
    runs: dict[str, RunRecords]  # job -> its run, for the jobs that started one
    needs: dict[str, set[str]]  # job -> the jobs whose outputs it reads
    edges_from: str  # 'pipeline file' or 'records': where the edges were read


def trace_of(raw: Any) -> Trace | None:
    """An attempt's `trace` as recorded (absent on records older than the trace): each figure
    kept only when it is a finite number >= 0, never a guess."""
    if not isinstance(raw, dict):
        return None

    def figure(name: str) -> float | None:
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) and value >= 0 else None

    return Trace(**{name: figure(name) for name in TRACE_FIELDS})


def load_shard(path: Path) -> tuple[ShardRecord, list[Trace | None]]:
    """A shard record and its attempts' traces, read whether or not this version of the
    record model knows the `trace` field (the trace is taken out before validation)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError) as exc:
        raise UntrustedInput(str(path), f"not a readable shard record: {exc}") from None
    if not isinstance(data, dict):
        raise UntrustedInput(str(path), "not a valid record: not a JSON object")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RecordError(str(path), f"written by a newer containerexec (schema {version})")
    attempts = data.get("attempts")
    traces = [
        trace_of(a.pop("trace", None)) if isinstance(a, dict) else None
        for a in (attempts if isinstance(attempts, list) else [])
    ]
    try:
        return ShardRecord.model_validate(data), traces
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UntrustedInput(str(path), f"not a valid record: {where}: {first['msg']}") from None


def load_run(store: RunStore, run_id: str) -> RunRecords:
    """A run's record and every shard record it has (a shard never started has none)."""
    run = store.load_run(run_id)
    folder = store.run_dir(run.run_id) / "shards"
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json")) if folder.is_dir() else []
    shards: list[ShardRecord] = []
    traces: dict[int, list[Trace | None]] = {}
    for name in names:
        shard, trace = load_shard(folder / name)
        shards.append(shard)
        traces[shard.index] = trace
    return RunRecords(run, shards, traces)


def load_pipeline_run(store: RunStore, pipeline_id: str) -> PipelineRecords:
    """A pipeline run's record, the runs its jobs started, and its DAG's edges."""
    path = store.pipeline_dir(pipeline_id) / "pipeline.json"
    rec = load_model(path, PipelineRecord)
    runs = {
        job: load_run(store, j.run_id)
        for job, j in rec.jobs.items()
        if j.run_id and (store.run_dir(j.run_id) / "run.json").is_file()
    }
    needs = _needs_from_file(rec)
    if needs is not None:
        return PipelineRecords(rec, runs, needs, "pipeline file")
    return PipelineRecords(rec, runs, _needs_from_records(rec, runs), "records")


def _needs_from_file(rec: PipelineRecord) -> dict[str, set[str]] | None:
    """The edges as the pipeline file writes them; None when it is gone, no longer parses,
    or names other jobs than the run did (it changed since)."""
    if not rec.pipeline_path or not Path(rec.pipeline_path).is_file():
        return None
    try:
        spec = load_pipeline(rec.pipeline_path)
    except (SpecError, OSError):
        return None
    if set(spec.jobs) != set(rec.jobs):
        return None
    needs: dict[str, set[str]] = {}
    for name, job in spec.jobs.items():
        sources = []
        for value in job.inputs.values():
            try:
                sources.append(parse_value(value))
            except ValueError:
                continue
        needs[name] = {s.name for s in sources if s.kind == "job" and s.name in spec.jobs}
    return needs


def _needs_from_records(rec: PipelineRecord, runs: dict[str, RunRecords]) -> dict[str, set[str]]:
    """The edges between jobs that ran: an input path that is another job's recorded output
    (as repro finds upstream jobs). A job that never started shows without edges."""
    made = {str(path): job for job, r in runs.items() for path in r.run.outputs.values() if path}
    return {
        job: {made[str(v)] for v in r.run.inputs.values() if str(v) in made and made[str(v)] != job}
        if (r := runs.get(job))
        else set()
        for job in rec.jobs
    }
