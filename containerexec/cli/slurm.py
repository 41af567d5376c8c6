"""Running on Slurm from the command line: the --on/--partition/... flags, their config
file and environment, `runs cancel`, and what `runs list/show` say about a Slurm run.

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
from containerexec.run.executor import Executor
from containerexec.run.sbatch import ACTIVE, SlurmClient, SlurmSettings
from containerexec.run.scheduler import LocalPool, Scheduler
from containerexec.run.slurm import SlurmScheduler
from containerexec.store.records import RunRecord

F = TypeVar("F", bound=Callable[..., Any])
KEYS = ("partition", "account", "time", "options", "python")


def slurm_options(fn: F) -> F:
    """The flags `run` and `pipeline run` share for where shards run."""
    for option in reversed(
        [
            click.option(
                "--on",
                "on",
                type=click.Choice(["local", "slurm"]),
                default=None,
                help="Where shards run: this Docker host (default) or a Slurm job array.",
            ),
            click.option("--partition", help="Slurm partition (sbatch --partition)."),
            click.option("--account", help="Slurm account (sbatch --account)."),
            click.option(
                "--time",
                "time_limit",
                metavar="TIME",
                help="Slurm time limit per task (default: the module's timeout + a margin).",
            ),
            click.option(
                "--sbatch-option",
                "sbatch_options",
                multiple=True,
                metavar="OPT",
                help="Any other sbatch option, verbatim, e.g. --sbatch-option=--qos=long.",
            ),
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


def configured() -> dict[str, Any]:
    """The [slurm] table of the config file, then the environment over it."""
    found: dict[str, Any] = {}
    path = config_file()
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text()).get("slurm", {})
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}") from None
        unknown = sorted(set(table) - {*KEYS, "on"})
        if unknown:
            raise UsageError(
                f"{path}: [slurm] has no setting '{unknown[0]}'; known: {', '.join(KEYS)}, on"
            )
        found.update(table)
    for key in (*KEYS, "on"):
        value = os.environ.get(f"CONTAINEREXEC_SLURM_{key.upper()}")
        if value:
            found[key] = shlex.split(value) if key == "options" else value
    return found


def make_scheduler(
    app: App,
    *,
    on: str | None,
    partition: str | None,
    account: str | None,
    time_limit: str | None,
    sbatch_options: tuple[str, ...],
    detach: bool,
    push_to: str | None,
) -> Scheduler:
    """LocalPool, or a SlurmScheduler with the settings from flags, environment and file."""
    conf = configured()
    where = on or conf.get("on", "local")
    if where != "slurm":
        if detach or push_to:
            flag = "--detach" if detach else "--push-to"
            raise UsageError(f"{flag} is for runs on Slurm; add --on slurm")
        return LocalPool()
    options = conf.get("options", [])
    settings = SlurmSettings(
        partition=partition or conf.get("partition"),
        account=account or conf.get("account"),
        time=time_limit or conf.get("time"),
        options=(*([options] if isinstance(options, str) else options), *sbatch_options),
        python=conf.get("python") or SlurmSettings().python,
    )
    return SlurmScheduler(
        settings=settings,
        engine=app.engine() if push_to else None,
        push_to=push_to,
        detach=detach,
        sleep=app.sleep or time.sleep,
    )


# -- runs on Slurm after their submitter ---------------------------------------------------


def live_state(app: App, rec: RunRecord) -> str:
    """A Slurm run no process follows (detached): running while Slurm has a task active;
    once none is, its record is settled from the shard records and Slurm's outcomes."""
    if rec.scheduler is None or not rec.scheduler.job_ids:
        return "interrupted"
    client = SlurmClient()
    active = any(
        state in ACTIVE for job in rec.scheduler.job_ids for state, _ in client.states(job).values()
    )
    if active:
        return f"running (Slurm job {rec.scheduler.job_ids[-1]})"
    with app.store.lock(rec.run_id):
        settled = settle(app, rec)
    return settled.state


def settle(app: App, rec: RunRecord, *, cancelled: bool = False) -> RunRecord:
    """Write the final record of a detached Slurm run whose tasks have all ended."""
    executor = Executor(app.engine(), app.store)
    run = executor.reopen(rec.run_id)
    if cancelled:
        run.tracker.cancelled.set()
        run.signal = signal.SIGTERM
    return run.settle().record


def cancel_run(app: App, run: str) -> None:
    """`runs cancel RUN`: scancel its jobs; a detached run's record is settled here."""
    rec = app.store.load_run(run)
    if rec.scheduler is None or not rec.scheduler.job_ids:
        raise UsageError(
            f"run {rec.run_id} did not run on Slurm; stop a local run with Ctrl-C "
            f"(or SIGTERM to process {rec.pid} on {rec.host})"
        )
    if rec.state != "running":
        raise UsageError(f"run {rec.run_id} has already ended ({rec.state})")
    client = SlurmClient()
    for job in rec.scheduler.job_ids:
        client.cancel(job)
    click.echo(f"cancelled Slurm job {', '.join(rec.scheduler.job_ids)} of run {rec.run_id}")
    lock = app.store.lock(rec.run_id)
    if lock.held():  # a submitter follows it: it records the end itself
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(
        state in ACTIVE for job in rec.scheduler.job_ids for state, _ in client.states(job).values()
    ):
        time.sleep(1)
    with lock:
        settle(app, rec, cancelled=True)
