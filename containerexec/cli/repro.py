"""Commands that take a run elsewhere: `runs export` and `repro` (replay, shell, debug, print)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import click

from containerexec.cli import App, cli
from containerexec.errors import UsageError
from containerexec.model.bindings import parse_pairs
from containerexec.run import replay, repro
from containerexec.run.executor import Executor
from containerexec.store import export as portable
from containerexec.store.records import write_json

from .modules import cancel_on_signals
from .runs import runs


@runs.command("export")
@click.argument("run")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write ('-' for standard output).",
)
@click.pass_obj
def export(app: App, run: str, output: Path) -> None:
    """Write one self-contained JSON file of RUN (an id, a prefix, or 'last'): its record,
    every shard's record and the end of each log; never secret values. `containerexec repro
    FILE` replays it on another machine."""
    data = portable.export_run(app.store, run).model_dump(mode="json")
    if str(output) == "-":
        click.echo(json.dumps(data, indent=1, sort_keys=True))
        return
    write_json(output, data)
    click.echo(
        f"exported run {data['run']['run_id']} ({len(data['shards'])} shards) to {output}", err=True
    )


@cli.command("repro")
@click.argument("record_or_run")
@click.option(
    "--shard",
    type=click.IntRange(min=0),
    help="The shard to replay (default: the first failed one).",
)
@click.option(
    "-i",
    "--inputs",
    multiple=True,
    metavar="NAME=PATH",
    help="Where an input is on this machine (default: where it was recorded).",
)
@click.option(
    "--ignore-input-changes",
    is_flag=True,
    help="Run even when the inputs differ from the recorded manifest.",
)
@click.option("--shell", is_flag=True, help="An interactive shell in the same container set-up.")
@click.option("--keep", is_flag=True, help="Leave the container stopped and print its name.")
@click.option(
    "--debug",
    is_flag=True,
    help="Run a Python command under debugpy, waiting for an editor to attach on 127.0.0.1.",
)
@click.option(
    "--debug-port",
    type=click.IntRange(1, 65535),
    default=repro.DEBUGPY_PORT,
    show_default=True,
    help="The port on 127.0.0.1 the debugger listens on.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Only print the equivalent plain `docker run` command line.",
)
@click.pass_context
def repro_command(
    ctx: click.Context,
    record_or_run: str,
    shard: int | None,
    inputs: tuple[str, ...],
    ignore_input_changes: bool,
    shell: bool,
    keep: bool,
    debug: bool,
    debug_port: int,
    print_only: bool,
) -> None:
    """Replay a recorded shard here, in its exact image (pulled by digest), and say whether
    the failure reproduced. RECORD_OR_RUN: a file from `runs export`, a run.json, or a run
    id, prefix or 'last' (the newest run that is not a repro). Exits as the replayed command
    did."""
    app: App = ctx.obj
    if shell and debug:
        raise UsageError("--shell and --debug exclude each other; pick one")
    mode: repro.Mode = "shell" if shell else "debug" if debug else "run"
    source = portable.load_source(app.store, record_or_run)
    given = parse_pairs(inputs, "--inputs")
    if print_only:
        _print(app, source, shard, given, mode, debug_port)
        return
    plan = repro.plan_replay(
        app.store, source, shard=shard, inputs=given, ignore_input_changes=ignore_input_changes
    )
    engine = app.engine()
    _header(plan, repro.ensure_image(engine, plan, sleep=app.sleep or time.sleep))
    secrets = replay.secret_values(plan.inv.secret_names, os.environ, _ask_secret)
    executor = Executor(engine, app.store, secrets=secrets, on_line=_echo_line)
    tty = sys.stdin.isatty()
    if mode == "shell":
        click.echo(
            f"the recorded command (paste it to run it):\n  {shlex.join(plan.inv.argv)}",
            err=True,
        )
        status = replay.shell(executor, plan, tty=tty, keep=keep)
        _kept(plan, keep)
        ctx.exit(status)
    if mode == "debug":
        _debug_banner(plan, debug_port)
        started = replay.start(executor, plan, mode, keep=keep, tty=tty, debug_port=debug_port)
        outcome = replay.outcome(executor, plan, started.wait())
    else:
        with cancel_on_signals(executor, _Notes(), grace_s=5.0):
            started = replay.start(executor, plan, mode, keep=keep)
            outcome = replay.outcome(executor, plan, started.wait())
        if executor.signal is not None:
            click.echo(outcome.verdict)
            ctx.exit(128 + executor.signal)
    _kept(plan, keep)
    if plan.outputs:
        click.echo(
            f"outputs: {', '.join(f'{k} -> {v}' for k, v in plan.outputs.items())}", err=True
        )
    click.echo(f"record: {outcome.record_path}", err=True)
    note = replay.stderr_comparison(plan.shard, outcome.shard)
    if note:
        click.echo(note, err=True)
    click.echo(outcome.verdict)
    code = outcome.shard.exit_code
    ctx.exit(code if code is not None else 1)


def _print(
    app: App,
    source: portable.RunExport,
    shard: int | None,
    given: dict[str, str],
    mode: repro.Mode,
    debug_port: int,
) -> None:
    plan = repro.plan_replay(
        app.store,
        source,
        shard=shard,
        inputs=given,
        strict=False,
        outputs_root=Path.cwd() / "repro-outputs",
    )
    click.echo(shlex.join(repro.print_command(plan, mode, debug_port=debug_port)))
    folders = " ".join(shlex.quote(p) for p in plan.outputs.values())
    if folders:
        click.echo(f"# the output folders must exist first: mkdir -p {folders}", err=True)
    if plan.inv.secret_names:
        click.echo(f"# export the secrets first: {' '.join(plan.inv.secret_names)}", err=True)


def _header(plan: repro.Plan, image: str) -> None:
    src, inv = plan.source.run, plan.inv
    click.echo(
        f"replaying shard {inv.shard_index}/{src.shard_count} of run {src.run_id} "
        f"(module '{src.module}', recorded exit {plan.shard.exit_code}) as run "
        f"{plan.run_id}\n  image: {inv.image} ({image})\n  argv:  {shlex.join(inv.argv)}",
        err=True,
    )
    if src.image.lock_sha256:
        click.echo(f"  packages: lock sha256:{src.image.lock_sha256}", err=True)
    for note in plan.notes:
        click.echo(f"  note:  {note}", err=True)


def _debug_banner(plan: repro.Plan, port: int) -> None:
    inv = repro.mode_invocation(plan, "debug")
    click.echo(
        f"debugpy waits for an editor on 127.0.0.1:{port}; the command is\n  "
        f"{shlex.join(inv.argv)}\nVS Code .vscode/launch.json:",
        err=True,
    )
    click.echo(json.dumps(repro.launch_config(inv, port), indent=2))


def _kept(plan: repro.Plan, keep: bool) -> None:
    if keep:
        name = plan.inv.name
        click.echo(
            f"kept the stopped container {name}: 'docker diff {name}', 'docker cp "
            f"{name}:PATH .', then 'docker rm {name}'",
            err=True,
        )


def _ask_secret(name: str) -> str:
    value: str = click.prompt(f"secret {name} (not stored)", hide_input=True, err=True)
    return value


def _echo_line(index: int, stream: str, line: str) -> None:
    click.echo(line, err=stream == "stderr")


class _Notes:
    def note(self, text: str) -> None:
        click.echo(text, err=True)
