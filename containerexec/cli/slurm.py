"""Where shards run, from the command line: --on (a name of the placement registry), each
placement's flags (Slurm's --partition/...), their config file and environment, `runs
cancel`, and what `runs list/show` say about a run on a cluster.

Settings, first found wins: a flag; CONTAINEREXEC_SLURM_PARTITION / _ACCOUNT / _TIME /
_OPTIONS / _PYTHON; the [slurm] table of ./containerexec.toml (or the file named by
CONTAINEREXEC_CONFIG); Slurm's own defaults.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from containerexec.cli.app import App
from containerexec.errors import UsageError
from containerexec.run import placement
from containerexec.run.executor import Executor
from containerexec.run.placement.base import Placement, Where, active_states
from containerexec.store.records import RunRecord

F = TypeVar("F", bound=Callable[..., Any])
CLUSTER = "slurm"  # the cluster whose table of containerexec.toml may say `on = ...`


def slurm_options(fn: F) -> F:
    """The flags `run` and `pipeline run` share for where shards run: --on, each
    placement's own flags (from the registry), --detach and --push-to."""
    own = [
        click.option(
            f.decl, f.dest, help=f.help, metavar=f.metavar, multiple=f.multiple, default=None
        )
        for kind in placement.names()
        for f in placement.flags(kind)
    ]
    for option in reversed(
        [
            click.option(
                "--on",
                "on",
                type=click.Choice(list(placement.names())),
                default=None,
                help="Where shards run: this Docker host (default) or a Slurm job array.",
            ),
            *own,
            click.option(
                "--detach", is_flag=True, help="On Slurm: print the run id once submitted, return."
            ),
            click.option(
                "--push-to",
                metavar="REGISTRY/REPO[:TAG]",
                help="On Slurm: push a local image here first, so every node can pull it.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def config_file() -> Path:
    return Path(os.environ.get("CONTAINEREXEC_CONFIG", "containerexec.toml"))


def configured(kind: str = CLUSTER) -> dict[str, Any]:
    """The [KIND] table of the config file, then the environment over it."""
    keys = placement.settings(kind)
    found: dict[str, Any] = {}
    path = config_file()
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text()).get(kind, {})
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}") from None
        unknown = sorted(set(table) - {*keys, "on"})
        if unknown:
            raise UsageError(
                f"{path}: [{kind}] has no setting '{unknown[0]}'; known: {', '.join(keys)}, on"
            )
        found.update(table)
    for key in (*keys, "on"):
        value = os.environ.get(f"CONTAINEREXEC_{kind.upper()}_{key.upper()}")
        if value:
            found[key] = shlex.split(value) if key == "options" else value
    return found


def make_scheduler(
    app: App,
    *,
    on: str | None,
    detach: bool,
    push_to: str | None,
    notice: Callable[[str], None] | None = None,
    **flags: Any,
) -> Placement:
    """The placement named by --on (or the config file's `on`), from the registry, with
    its settings from flags, environment and file; `notice` shows its progress (the push,
    the submission, the job id)."""
    conf = configured()
    where = on or conf.get("on", "local")
    if where == "local":
        if detach or push_to:
            flag = "--detach" if detach else "--push-to"
            raise UsageError(f"{flag} is for runs on Slurm; add --on slurm")
        return placement.make("local", Where())
    return placement.make(
        where,
        Where(
            flags={k: v for k, v in flags.items() if v},
            conf=configured(where),
            engine=app.engine() if push_to else None,
            push_to=push_to,
            detach=detach,
            sleep=app.sleep or time.sleep,
            notice=notice,
        ),
    )


def again_command(
    spec: str,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    where: dict[str, Any],
    more: tuple[str, ...] = (),
) -> str:
    """The `containerexec run` command with these arguments, `more` (--resume RUN, ...)
    and the placement's flags (--on, each placement's own, --detach, --push-to): what to
    run again."""
    argv = ["containerexec", "run", spec]
    argv += [arg for pair in inputs for arg in ("-i", pair)]
    argv += [arg for pair in outputs for arg in ("-o", pair)]
    argv += more
    if where.get("on"):
        argv += ["--on", where["on"]]
    for kind in placement.names():
        for f in placement.flags(kind):
            value = where.get(f.dest)
            values = value if isinstance(value, (list, tuple)) else [value] if value else []
            for v in values:  # a repeatable flag's value may start with '-': keep it joined
                argv += [f"{f.decl}={v}"] if f.multiple else [f.decl, str(v)]
    if where.get("detach"):
        argv.append("--detach")
    if where.get("push_to"):
        argv += ["--push-to", where["push_to"]]
    return shlex.join(argv)


# -- runs on Slurm after their submitter ---------------------------------------------------


def _backend(rec: RunRecord) -> placement.ArrayBackend | None:
    return placement.backend(rec.scheduler.kind) if rec.scheduler else None


def live_state(app: App, rec: RunRecord) -> str:
    """A cluster run no process follows (detached): running while its cluster has a task
    active; once none is, its record is settled from the shard records and the cluster's
    outcomes."""
    backend = _backend(rec)
    if rec.scheduler is None or not rec.scheduler.job_ids or backend is None:
        return "interrupted"
    active = any(active_states(backend, job) for job in rec.scheduler.job_ids)
    if active:
        return f"running ({backend.title} job {rec.scheduler.job_ids[-1]})"
    with app.store.lock(rec.run_id):
        settled = settle(app, rec)
    return settled.state


def settle(app: App, rec: RunRecord, *, cancelled: bool = False) -> RunRecord:
    """Write the final record of a detached cluster run whose tasks have all ended."""
    executor = Executor(app.engine(), app.store)
    run = executor.reopen(rec.run_id)
    if cancelled:
        run.tracker.cancelled.set()
        run.signal = signal.SIGTERM
    return run.settle().record


def cancel_run(app: App, run: str) -> None:
    """`runs cancel RUN`: cancel its cluster jobs; a detached run's record is settled here."""
    rec = app.store.load_run(run)
    backend = _backend(rec)
    if rec.scheduler is None or not rec.scheduler.job_ids or backend is None:
        raise UsageError(
            f"run {rec.run_id} did not run on Slurm; stop a local run with Ctrl-C "
            f"(or SIGTERM to process {rec.pid} on {rec.host})"
        )
    if rec.state != "running":
        raise UsageError(f"run {rec.run_id} has already ended ({rec.state})")
    for job in rec.scheduler.job_ids:
        backend.cancel(job)
    click.echo(
        f"cancelled {backend.title} job {', '.join(rec.scheduler.job_ids)} of run {rec.run_id}"
    )
    lock = app.store.lock(rec.run_id)
    if lock.held():  # a submitter follows it: it records the end itself
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(
        active_states(backend, job) for job in rec.scheduler.job_ids
    ):
        time.sleep(1)
    with lock:
        settle(app, rec, cancelled=True)
