"""Commands on pipelines: pipeline run, validate, graph (export lives in authoring)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from containerexec.cli.app import App
from containerexec.cli.display import RunDisplay
from containerexec.cli.formats import (
    component_map_option,
    image_map_option,
    load_module_file,
    load_plan,
)
from containerexec.cli.lazy import Lazy, LazyGroup
from containerexec.cli.options import (
    grace_option,
    inputs_option,
    outputs_option,
    overwrite_option,
    pull_option,
)
from containerexec.cli.slurm import make_scheduler, slurm_options
from containerexec.cli.status import pipeline_status
from containerexec.errors import UsageError
from containerexec.model.bindings import parse_pairs
from containerexec.model.graph import edges, render_dot, render_text
from containerexec.model.pipeline import ModuleLoader, Plan
from containerexec.model.pipelinecheck import is_spec_path, load_pipeline
from containerexec.model.spec import ModuleSpec
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import JobEvent, PipelineResult
from containerexec.run.executor import secrets_from

from .modules import cancel_on_signals, load_module


@click.group(cls=LazyGroup, lazy={"export": Lazy("containerexec.cli.commands.authoring:export")})
def pipeline() -> None:
    """Pipelines: DAGs of module jobs run on this Docker host."""


def loader(app: App, spec_dir: Path) -> ModuleLoader:
    """Spec paths relative to the pipeline file; anything else is an image carrying its spec."""

    def load(ref: str) -> tuple[ModuleSpec, Path | None]:
        if is_spec_path(ref, spec_dir):
            return load_module_file(spec_dir / ref), spec_dir / ref
        return load_module(app, Path(ref))

    return load


@pipeline.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@image_map_option
@component_map_option
@click.pass_obj
def validate_pipeline(app: App, file: Path) -> None:
    """Check a pipeline and its modules; list every problem as FILE:LINE:COL (exit 2)."""
    plan = load_plan(file, loader(app, file.parent))
    n_links = len(edges(plan.pipeline))
    click.echo(
        f"{file}: valid pipeline '{plan.pipeline.name}' {plan.pipeline.version} "
        f"({len(plan.jobs)} jobs, {n_links} links; order: {', '.join(plan.order)})"
    )


@pipeline.command("graph")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--dot",
    "dot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the graph in Graphviz DOT to this file.",
)
def graph(file: Path, dot: Path | None) -> None:
    """Print a pipeline's DAG: jobs by generation, with the links into each."""
    spec = load_pipeline(file)
    click.echo(render_text(spec))
    if dot is not None:
        dot.write_text(render_dot(spec))
        click.echo(f"wrote {dot} (render it: dot -Tsvg {dot} -o graph.svg)", err=True)


@pipeline.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@inputs_option
@outputs_option
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Jobs running at once.",
)
@click.option(
    "--max-containers",
    type=click.IntRange(min=1),
    help="Containers at once over all jobs (default: the number of CPU cores).",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="After a failure, still run every job that does not depend on it.",
)
@click.option("--no-cache", is_flag=True, help="Run every shard, even when its result is cached.")
@overwrite_option
@pull_option
@grace_option
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label for every container of the run (repeatable).",
)
@image_map_option
@component_map_option
@slurm_options
@click.pass_context
def run_pipeline(
    ctx: click.Context,
    /,
    file: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    max_workers: int,
    max_containers: int | None,
    keep_going: bool,
    no_cache: bool,
    overwrite: bool,
    pull: str | None,
    grace: float,
    labels: tuple[str, ...],
    **where: Any,
) -> None:
    """Run a pipeline: each job once its inputs are ready; exit 0 when every job succeeded.

    A failed job stops new jobs from starting (running ones finish) unless
    --keep-going; Ctrl-C or SIGTERM stops every container and exits 130 or 143.
    The pipeline run's id is printed on stdout (all else goes to stderr).
    With --on slurm each job runs as its own Slurm job array once its upstream
    jobs have succeeded (--detach is for module runs only).
    """
    app: App = ctx.obj
    if where.get("detach"):
        raise UsageError("pipeline run --detach: not supported; run it in the background")
    scheduler = make_scheduler(app, **where)
    plan = load_plan(file, loader(app, file.parent))
    names = {n for job in plan.jobs.values() for n in job.module.secrets}
    display = PipelineDisplay(plan)
    orchestrator = Orchestrator(
        app.engine(),
        app.store,
        max_workers=max_workers,
        max_containers=max_containers,
        keep_going=keep_going,
        cache=not no_cache,
        pull=pull,
        grace_s=grace,
        secrets=secrets_from(sorted(names), os.environ),
        labels=parse_pairs(labels, "--label"),
        on_event=display.job_event,
        overwrite=overwrite,
        scheduler=scheduler,
    )
    with display, cancel_on_signals(orchestrator, display, grace):
        result = orchestrator.run(plan, parse_pairs(inputs, "-i"), parse_pairs(outputs, "-o"))
    pipeline_summary(result)
    click.echo(result.record.id)  # the only line on stdout, for scripts: ID=$(... run ...)
    ctx.exit(pipeline_status(result.record))


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
