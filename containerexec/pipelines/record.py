"""The record of a pipeline run (pipeline.json) and of each of its jobs, the events a
display sees, and the result a caller gets.

pipeline.json is rewritten whenever a job changes state, so a reader (runs show, export,
repro --job) sees how far the run got, and whether it ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from containerexec.model.names import JobName, ModuleName, RunId
from containerexec.run.results import RunResult, ShardEvent
from containerexec.store.records import SCHEMA_VERSION, Record, RunState

JobState = Literal["pending", "running", "succeeded", "failed", "cancelled", "skipped"]


class JobRecord(Record):
    """One job of a pipeline run: its module run and whether the cache served it."""

    module: ModuleName
    state: JobState = "pending"
    run_id: RunId | None = None
    cached: bool = Field(
        default=False, description="Every shard came from the cache; no container ran."
    )
    shards: int = 0
    shards_cached: int = 0
    exit_code: int | None = None
    message: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


class PipelineRecord(Record):
    schema_version: int = SCHEMA_VERSION
    id: RunId
    name: ModuleName
    version: str
    pipeline_path: str | None
    state: RunState
    signal: int | None = Field(None, description="The signal that cancelled the run.")
    inputs: dict[str, Any]
    outputs: dict[str, str] = Field(description="Where each pipeline output is (or would be).")
    outputs_placed: list[str] = Field(default_factory=list)
    jobs: dict[JobName, JobRecord]
    max_workers: int
    max_containers: int
    keep_going: bool
    cache: bool
    started_at: float
    ended_at: float | None = None
    host: str = ""
    pid: int = 0


@dataclass(frozen=True)
class JobEvent:
    """Progress of a job (kind 'shard' wraps its executor's ShardEvent), for displays."""

    job: str
    kind: Literal["started", "finished", "skipped", "shard"]
    state: JobState | None = None
    shard: ShardEvent | None = None
    message: str = ""


@dataclass
class PipelineResult:
    record: PipelineRecord
    record_path: Path
    runs: dict[str, RunResult] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def failed(self) -> list[str]:
        return [n for n, j in self.record.jobs.items() if j.state == "failed"]
