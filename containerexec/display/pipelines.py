"""What a pipeline run shows: its jobs and their shards live, then the summary of jobs.

Shared by `containerexec pipeline run` and `Pipeline.run(progress=True)`.
"""

from __future__ import annotations

import time
from collections import Counter

import click
from rich.console import Console
from rich.table import Table

from containerexec.display.runs import RunDisplay
from containerexec.model.pipeline import Plan
from containerexec.pipelines.record import JobEvent, PipelineResult


class PipelineDisplay(RunDisplay):
    """Jobs and their shards as a live table on a terminal, else one line per job event."""

    def __init__(self, plan: Plan) -> None:
        self.states = {n: "pending" for n in plan.jobs}
        self.jobs: dict[str, Counter[str]] = {n: Counter() for n in plan.jobs}
        super().__init__(stream_output=False, total=0)

    def job_event(self, e: JobEvent) -> None:
        with self.lock:
            job = self.jobs[e.job]
            if e.kind == "shard" and e.shard is not None:
                s = e.shard
                if s.kind == "planned":
                    job["total"] = s.count
                elif s.kind == "started":
                    job["running"] += 1
                elif s.kind == "skipped":
                    job["done"] += 1
                elif s.kind == "finished":
                    job["running"] -= 1
                    job["done" if s.state == "succeeded" else "failed"] += 1
                    if s.attempt is None and s.state == "succeeded":
                        job["cached"] += 1  # restored from the cache: no attempt was made
            else:
                self.states[e.job] = e.state or self.states[e.job]
                if not self.live_mode or e.message:
                    shards = f" ({job['done']}/{job['total']} shards, {job['cached']} cached)"
                    detail = f": {e.message}" if e.message else ""
                    self.note(
                        f"job {e.job} {e.state}{shards if e.kind == 'finished' else ''}{detail}"
                    )
            if self._live is not None:
                self._live.update(self._render())

    def _render(self) -> Table:  # type: ignore[override]
        table = Table(box=None, title=f"elapsed {time.monotonic() - self.started:.0f} s")
        for col in ("job", "state", "shards", "running", "failed", "cached"):
            table.add_column(col)
        for name, j in self.jobs.items():
            table.add_row(
                name,
                self.states[name],
                f"{j['done']}/{j['total']}",
                str(j["running"]),
                str(j["failed"]),
                str(j["cached"]),
            )
        return table


def pipeline_summary(result: PipelineResult) -> None:
    """The final table of jobs, where the outputs are, and where the record is."""
    rec = result.record
    console = Console(stderr=True, highlight=False)
    table = Table(title=f"pipeline {rec.name} {rec.id}: {rec.state}", box=None)
    for col in ("job", "module", "state", "shards", "cached", "seconds", "exit"):
        table.add_column(col)
    for name, j in rec.jobs.items():
        secs = f"{j.ended_at - j.started_at:.1f}" if j.ended_at and j.started_at else "-"
        table.add_row(
            name,
            j.module,
            j.state,
            str(j.shards),
            str(j.shards_cached),
            secs,
            "-" if j.exit_code is None else str(j.exit_code),
        )
    console.print(table)
    for name, j in rec.jobs.items():
        if j.state == "failed" and j.message:
            click.echo(f"job {name} failed: {j.message}", err=True)
    for name, run in result.runs.items():  # memory peaks past 90 % of the limit
        for warning in run.near_limit[:10]:
            click.echo(
                f"job {name}: {warning} (containerexec runs show {run.record.run_id} --trace)",
                err=True,
            )
    for name, path in rec.outputs.items():
        placed = "" if name in rec.outputs_placed or rec.state == "succeeded" else " (not written)"
        click.echo(f"output {name} -> {path}{placed}", err=True)
    click.echo(
        f"record: {result.record_path} (job runs: containerexec runs show {rec.id}.JOB)", err=True
    )
