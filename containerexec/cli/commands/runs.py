"""Commands on recorded runs: runs list, runs show."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from containerexec.cli.app import App
from containerexec.cli.lazy import Lazy, LazyGroup
from containerexec.cli.slurm import cancel_run, live_state
from containerexec.cli.status import run_status
from containerexec.repro import sources
from containerexec.run import trace
from containerexec.store.export import RunExport
from containerexec.store.records import RunRecord, ShardRecord


@click.group(cls=LazyGroup, lazy={"export": Lazy("containerexec.cli.commands.repro:export")})
def runs() -> None:
    """Recorded runs (in --runs-dir)."""


def _state(app: App, rec: RunRecord) -> str:
    """'interrupted' for a run recorded as running that no process holds any more."""
    if rec.state == "running" and not app.store.lock(rec.run_id).held():
        return live_state(app, rec)  # 'interrupted', unless Slurm still runs it
    return rec.state


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@runs.command("list")
@click.pass_obj
def list_runs(app: App) -> None:
    """One line per run, newest last."""
    store = app.store
    records = [store.load_run(i) for i in store.ids()]
    if not records:
        click.echo(f"no runs recorded in {store.runs}")
        return
    click.echo(f"{'RUN':44} {'STATE':11} {'EXIT':>4} {'SHARDS':>7} {'STARTED':19} SLURM JOB")
    for r in sorted(records, key=lambda r: r.started_at):
        code = "-" if r.state == "running" else str(run_status(r))
        click.echo(
            f"{r.run_id:44} {_state(app, r):11} {code:>4} {r.shard_count:>7} "
            f"{_when(r.started_at):19} {_jobs(r)}"
        )


def _jobs(rec: RunRecord) -> str:
    return ",".join(rec.scheduler.job_ids) if rec.scheduler else "-"


@runs.command("cancel")
@click.argument("run")
@click.pass_obj
def cancel(app: App, run: str) -> None:
    """Cancel a run on Slurm (detached or not): its tasks stop and remove their containers."""
    cancel_run(app, run)


@runs.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="The full record as JSON.")
@click.option(
    "--trace",
    "show_trace",
    is_flag=True,
    help="Each shard's resource figures (memory peak, CPU, wall time, block I/O), the "
    "shards near their memory limit, and a suggested limit.",
)
@click.option(
    "--sort",
    type=click.Choice(list(trace.SORTS)),
    default="peak",
    show_default=True,
    help="The --trace table's order: largest first, or by shard.",
)
@click.pass_obj
def show(app: App, run: str, as_json: bool, show_trace: bool, sort: str) -> None:
    """A run's record and the state of each of its shards. RUN: an id, a prefix, 'last', or
    a file from `runs export` (JSON or bundle), which also shows the end of failed logs."""
    store = app.store
    if Path(run).expanduser().is_file() and show_trace:
        _trace_file(app, Path(run).expanduser(), sort, as_json)
        return
    if Path(run).expanduser().is_file():
        _show_file(app, Path(run).expanduser(), as_json)
        return
    rec = store.load_run(run)
    shards = store.load_shards(rec.run_id)
    if show_trace:
        _show_trace(rec, [shards[i] for i in sorted(shards)], sort, as_json)
        return
    if as_json:
        data = rec.model_dump(mode="json")
        data["shards"] = [s.model_dump(mode="json") for s in shards.values()]
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    run_state = _state(app, rec)
    click.echo(
        f"run:      {rec.run_id}\nmodule:   {rec.module} {rec.version}\n"
        f"state:    {run_state} (exit {'-' if rec.state == 'running' else run_status(rec)})\n"
        f"image:    {rec.image.pinned}\n"
        + (f"slurm:    job {_jobs(rec)}\n" if rec.scheduler else "")
        + f"started:  {_when(rec.started_at)}\nended:    {_when(rec.ended_at)}"
    )
    if rec.reason:
        click.echo(f"reason:   {rec.reason}")
    for note in rec.notes:  # what its resumes said (changed inputs, build folder, source)
        click.echo(f"note:     {note}")
    for name, path in rec.outputs.items():
        click.echo(f"output:   {name} -> {path}")
    click.echo(f"\n{'SHARD':>6} {'STATE':11} {'EXIT':>4} {'TRIES':>5}  {'FAILURE':18} VALUE")
    wanted = rec.shards_selected if rec.shards_selected is not None else range(rec.shard_count)
    for i in wanted:
        s = shards.get(i)
        if s is None:
            waiting = "pending" if rec.state == "running" else "not started"
            click.echo(f"{i:>6} {waiting:11} {'-':>4} {0:>5}  {'':18}")
            continue
        code = "-" if s.exit_code is None else str(s.exit_code)
        state = "interrupted" if s.state == "running" and run_state == "interrupted" else s.state
        click.echo(
            f"{i:>6} {state:11} {code:>4} {len(s.attempts):>5}  {s.failure or '':18} {s.value}"
        )


def _show_trace(rec: RunRecord, shards: list[ShardRecord], sort: str, as_json: bool) -> None:
    """Each shard's last traced attempt, the shards near their memory limit, a suggestion."""
    report = trace.report(rec.run_id, shards, sort)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(
        f"run {rec.run_id} ({rec.module}): the last traced attempt of each shard, by {sort}\n"
        f"{'SHARD':>6} {'STATE':10} {'TRY':>3} {'PEAK MEM':>11} {'LIMIT':>11} {'USE':>4} "
        f"{'CPU S':>8} {'WALL S':>8} {'READ':>11} {'WRITE':>11}  VALUE"
    )
    for r in report["shards"]:
        limit, peak = r["memory_limit_bytes"], r["peak_memory_bytes"]
        use = f"{peak / limit:.0%}" if limit and peak is not None else "-"
        click.echo(
            f"{r['shard']:>6} {r['state']:10} {r['attempt'] or '-':>3} {trace.mib(peak):>11} "
            f"{trace.mib(limit):>11} {use:>4} {_num(r['cpu_seconds']):>8} "
            f"{_num(r['wall_seconds']):>8} {trace.size(r['read_bytes']):>11} "
            f"{trace.size(r['write_bytes']):>11}  {r['value']}"
            + (" (batch figures)" if r["packed"] else "")
        )
    for w in report["warnings"]:
        click.echo(w["message"])
    click.echo(report["suggestion"] or "no memory peak recorded: no limit to suggest")


def _trace_file(app: App, path: Path, sort: str, as_json: bool) -> None:
    """The trace of each run in an export or bundle (a pipeline's: one per job)."""
    src = sources.load(app.store, str(path))
    runs = list(src.jobs.values()) if src.pipeline else [src.run]
    if as_json:
        reports = [trace.report(r.run.run_id, r.shards, sort) for r in runs]
        click.echo(json.dumps(reports, indent=2, sort_keys=True))
        return
    for r in runs:
        _show_trace(r.run, r.shards, sort, False)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _show_file(app: App, path: Path, as_json: bool) -> None:
    """An exported run, pipeline run or bundle: what it holds, shards, and failed log tails."""
    src = sources.load(app.store, str(path))
    runs = list(src.jobs.values()) if src.pipeline else [src.run]
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    if src.bundle is not None:
        m = src.bundle.manifest
        images = ", ".join(f"{i.id[:19]} ({i.bytes / (1 << 20):.1f} MiB)" for i in m.images)
        inputs = ", ".join(
            f"{i.name}" + (f" (from job {i.made_by})" if i.made_by else "") for i in m.inputs
        )
        click.echo(f"bundle:   {path}\nimage:    {images or 'not carried (pulled by digest)'}")
        where = f" of {m.inputs_run} shard {m.inputs_shard}" if inputs else ""
        click.echo(f"inputs:   {inputs or 'not carried (give -i NAME=PATH)'}{where}")
    if src.pipeline is not None:
        p = src.pipeline
        click.echo(f"pipeline: {p.id} ({p.name} {p.version}): {p.state}")
        for name, j in p.jobs.items():
            code = "-" if j.exit_code is None else str(j.exit_code)
            click.echo(f"  job {name:16} {j.state:10} exit {code:>3}  {j.run_id or ''}")
    for r in runs:
        click.echo("")
        _show_export(r)


def _show_export(ex: RunExport) -> None:
    rec = ex.run
    click.echo(
        f"run:      {rec.run_id}\nmodule:   {rec.module} {rec.version}\n"
        f"state:    {rec.state} (exit {run_status(rec)})\nimage:    {rec.image.pinned}\n"
        f"host:     {rec.host or '-'}\nstarted:  {_when(rec.started_at)}"
    )
    click.echo(f"\n{'SHARD':>6} {'STATE':11} {'EXIT':>4} {'TRIES':>5}  {'FAILURE':18} VALUE")
    for s in sorted(ex.shards, key=lambda s: s.index):
        code = "-" if s.exit_code is None else str(s.exit_code)
        click.echo(
            f"{s.index:>6} {s.state:11} {code:>4} {len(s.attempts):>5}  "
            f"{s.failure or '':18} {s.value}"
        )
    for s in sorted(ex.shards, key=lambda s: s.index):
        tail = ex.logs.get(s.index, [])[-10:]
        if s.state == "failed" and tail:
            click.echo(f"\nshard {s.index}: {s.message}; the end of its log:")
            for line in tail:
                click.echo(f"  {line}")
