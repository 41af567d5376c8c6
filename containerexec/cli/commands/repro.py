"""Commands that take a run elsewhere: `runs export` and `repro` (replay, shell, debug, print)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import click

from containerexec.cli.app import App
from containerexec.cli.slurm import live_state
from containerexec.errors import UsageError
from containerexec.model.bindings import parse_pairs
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.spec import parse_bytes
from containerexec.repro import dockerscript, planning, replay, sources
from containerexec.run.executor import Executor
from containerexec.store import bundle as bundles
from containerexec.store.records import RunRecord

from .modules import cancel_on_signals

DEBUG_PORT_WAIT_S = 30.0


def _refuse_or_wait(app: App, run: str, wait: bool) -> None:
    """A run or pipeline run still running: refused, or with --wait waited for (Ctrl-C
    exits 130 with nothing exported). A detached Slurm run counts while Slurm runs it."""
    live = sources.running(app.store, run, lambda rec: _on_slurm(app, rec))
    if live is None:
        return
    if not wait:
        raise live
    try:  # from before the line that says Ctrl-C stops: a Ctrl-C right after it counts
        click.echo(f"{live.summary()}: waiting for it to end (Ctrl-C stops)", err=True)
        sources.wait_until_ended(app.store, run, lambda rec: _on_slurm(app, rec))
    except KeyboardInterrupt:
        click.echo(f"stopped waiting for {live.what}; nothing was exported", err=True)
        raise click.exceptions.Exit(130) from None


def _on_slurm(app: App, rec: RunRecord) -> str | None:
    """'Slurm job N' while a detached Slurm run has a task active (else its record is
    settled, so the export holds its end)."""
    if rec.scheduler is None or not rec.scheduler.job_ids:
        return None
    state = live_state(app, rec)
    return state[len("running (") : -1] if state.startswith("running (") else None


@click.command("export")
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The JSON file to write ('-' for standard output).",
)
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a bundle (a tar; .tar.gz gzips it) that can also carry the image and inputs.",
)
@click.option("--with-image", is_flag=True, help="Put the run's image in the bundle.")
@click.option("--with-inputs", is_flag=True, help="Put one shard's inputs in the bundle.")
@click.option(
    "--max-input-bytes",
    type=click.IntRange(min=0),
    default=bundles.DEFAULT_MAX_INPUT_BYTES,
    show_default=True,
    help="Refuse --with-inputs past this many bytes of inputs.",
)
@click.option(
    "--shard",
    type=click.IntRange(min=0),
    help="Whose inputs --with-inputs takes (default: the first failed shard).",
)
@click.option("--job", help="Of a pipeline run: whose inputs (default: the first failed job).")
@click.option(
    "--wait",
    is_flag=True,
    help="If RUN is still running, wait until it ends, then export (Ctrl-C stops waiting).",
)
@click.pass_obj
def export(
    app: App,
    run: str,
    output: Path | None,
    bundle: Path | None,
    with_image: bool,
    with_inputs: bool,
    max_input_bytes: int,
    shard: int | None,
    job: str | None,
    wait: bool,
) -> None:
    """Write RUN (an id, a prefix, 'last', or a pipeline run id) to one file: its record,
    every shard's record and the end of each log, never secret values; with --bundle,
    optionally its image and a failed shard's inputs. `containerexec repro FILE` replays
    it on another machine."""
    if (output is None) == (bundle is None):
        raise UsageError("give one of -o FILE (JSON) and --bundle FILE")
    if bundle is None and (with_image or with_inputs):
        raise UsageError("--with-image and --with-inputs need --bundle FILE (JSON holds neither)")
    _refuse_or_wait(app, run, wait)
    if output is not None:
        what, text = sources.write_export(app.store, run, None if str(output) == "-" else output)
        if str(output) == "-":
            click.echo(text)
        else:
            click.echo(f"exported {what} to {output}", err=True)
        return
    assert bundle is not None
    began = time.monotonic()
    made = sources.write_bundle(
        app.store,
        run,
        bundle,
        engine=app.engine if with_image else None,
        job=job,
        shard=shard,
        with_inputs=with_inputs,
        max_input_bytes=max_input_bytes,
    )
    parts = [f"{len(made.runs)} run(s)"]
    parts += [f"image {i.id[:19]} ({i.bytes / (1 << 20):.1f} MiB)" for i in made.images]
    parts += [
        f"input {i.name}" + (f" (made by job {i.made_by})" if i.made_by else "")
        for i in made.inputs
    ]
    click.echo(
        f"bundled {', '.join(parts)} into {bundle} ({bundle.stat().st_size / (1 << 20):.1f} "
        f"MiB, {time.monotonic() - began:.1f} s)",
        err=True,
    )


@click.command("repro")
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
    default=planning.DEBUGPY_PORT,
    show_default=True,
    help="The port on 127.0.0.1 the debugger listens on.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Only print the equivalent plain `docker run` command line.",
)
@click.option("--job", help="Of a pipeline run: the job to replay (default: the first failed).")
@click.option(
    "--allow-network",
    is_flag=True,
    help="Grant the network a record asks for (replay runs without one otherwise).",
)
@click.option(
    "--allow-user",
    is_flag=True,
    help="Run as the user the record names (replay runs as you otherwise).",
)
@click.option(
    "--max-unpacked",
    metavar="SIZE",
    callback=lambda _ctx, _param, value: _size("--max-unpacked", value),
    help="Of a bundle: unpack at most this much (512M, 2G or bytes; default: 20 times the "
    "bundle's size, at least 64M).",
)
@click.pass_context
def repro_command(
    ctx: click.Context,
    record_or_run: str,
    job: str | None,
    shard: int | None,
    inputs: tuple[str, ...],
    ignore_input_changes: bool,
    shell: bool,
    keep: bool,
    debug: bool,
    debug_port: int,
    print_only: bool,
    allow_network: bool,
    allow_user: bool,
    max_unpacked: int | None,
) -> None:
    """Replay a recorded shard here, in its exact image (pulled by digest), and say whether
    the failure reproduced. RECORD_OR_RUN: a file from `runs export`, a run.json, or a run
    id, prefix or 'last' (the newest run that is not a repro). Exits as the replayed command
    did."""
    app: App = ctx.obj
    if shell and debug:
        raise UsageError("--shell and --debug exclude each other; pick one")
    mode: planning.Mode = "shell" if shell else "debug" if debug else "run"
    source = sources.load(app.store, record_or_run, job=job)
    if source.bundle is not None and max_unpacked is not None:
        source.bundle.budget = bundles.Budget(max_unpacked)
    rec = planning.pick_shard(source.run, shard)
    grants = planning.Grants(network=allow_network, user=allow_user)
    root = replay.engine_places(app.engine, required=not print_only)
    # Before anything is unpacked or written: what the record asks for is granted or refused.
    planning.check_record(source.run, rec, mode=mode, grants=grants, engine_places=root)
    prepared = sources.bundle_inputs(app.store, source, rec, parse_pairs(inputs, "--inputs"))
    given = prepared.inputs
    for note in prepared.notes:
        click.echo(note, err=True)
    if print_only:
        _print(app, source, rec.index, given, mode, debug_port, grants, root)
        return
    sleep = app.sleep or time.sleep
    needed = sources.upstream_needed(source, rec, given) if source.pipeline else {}
    if needed:
        engine = app.engine()
        upstream = Executor(engine, app.store, on_line=_echo_line)
        given |= sources.replay_upstream(
            upstream,
            source,
            needed,
            say=lambda t: click.echo(t, err=True),
            sleep=sleep,
            grants=grants,
            engine_places=root,
        )
    plan = planning.plan_replay(
        app.store,
        source.run,
        shard=rec.index,
        inputs=given,
        ignore_input_changes=ignore_input_changes,
        mode=mode,
        grants=grants,
        engine_places=root,
    )
    engine = app.engine()
    plan, how = sources.make_image_present(engine, source, source.run, plan, sleep)
    _header(plan, how, source.job, mode)
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
    ended = threading.Event()
    with cancel_on_signals(executor, _Notes(), grace_s=5.0):  # Ctrl-C stops the container
        if mode == "debug":
            _debug_banner(plan, debug_port)
            check = threading.Thread(target=_check_port, args=(plan, debug_port, ended))
            check.daemon = True
            check.start()
        try:
            started = replay.start(executor, plan, mode, keep=keep, tty=tty, debug_port=debug_port)
            outcome = replay.outcome(executor, plan, started.wait())
        finally:
            ended.set()
    if executor.signal is not None:
        click.echo(outcome.verdict)
        ctx.exit(128 + executor.signal)
    _kept(plan, keep)
    if plan.outputs:
        click.echo(
            f"outputs: {', '.join(f'{k} -> {v}' for k, v in plan.outputs.items())}", err=True
        )
    click.echo(f"record: {outcome.record_path}", err=True)
    last = replay.stderr_comparison(plan.shard, outcome.shard)
    if last:
        click.echo(last, err=True)
    click.echo(outcome.verdict)
    code = outcome.shard.exit_code
    ctx.exit(code if code is not None else 1)


def _size(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _print(
    app: App,
    source: sources.Source,
    shard: int,
    given: dict[str, str],
    mode: planning.Mode,
    debug_port: int,
    grants: planning.Grants,
    root: EnginePlaces | None,
) -> None:
    rec = planning.pick_shard(source.run, shard)
    # docker would exit 125 on missing inputs
    planning.check_present(source.run.run.run_id, rec, given, engine_places=root)
    plan = planning.plan_replay(
        app.store,
        source.run,
        shard=shard,
        inputs=given,
        strict=False,
        outputs_root=Path.cwd() / "repro-outputs",
        mode=mode,
        grants=grants,
        engine_places=root,
    )
    image_step = None
    image_id = source.run.run.image.id
    name = f"repro-image-{image_id.removeprefix('sha256:')[:12]}.tar"
    image_file = sources.bundle_image_file(source, image_id, Path.cwd() / name)
    if image_file is not None:
        # Checked here and written without tags: loading it moves no tag of this engine,
        # and the script runs the image by its ID.
        click.echo(f"the bundle's image, ID checked, is in {image_file} for the script", err=True)
        ref, path = shlex.quote(image_id), shlex.quote(str(image_file))
        image_step = (
            f"docker image inspect {ref} >/dev/null 2>&1 || docker load -i {path} || exit 1"
        )
        plan = dataclasses.replace(plan, inv=plan.inv.model_copy(update={"image": image_id}))
    click.echo(
        dockerscript.print_script(
            plan, mode, debug_port=debug_port, image_step=image_step, grace_s=source.run.run.grace_s
        ),
        nl=False,
    )


def _header(plan: planning.Plan, image: str, job: str | None, mode: planning.Mode) -> None:
    src, inv = plan.source.run, plan.inv
    of_job = f"job '{job}' of pipeline run {src.pipeline_run}, " if job else ""
    click.echo(
        f"replaying shard {inv.shard_index}/{src.shard_count} of {of_job}run {src.run_id} "
        f"(module '{src.module}', recorded exit {plan.shard.exit_code}) as run "
        f"{plan.run_id}\n  image: {inv.image} ({image})\n  argv:  {shlex.join(inv.argv)}",
        err=True,
    )
    if src.image.lock_sha256:
        click.echo(f"  packages: lock sha256:{src.image.lock_sha256}", err=True)
    for note in plan.notes:
        click.echo(f"  note:  {note}", err=True)
    click.echo("\n".join(f"  {line}" for line in planning.grant_lines(plan, mode)), err=True)


def _debug_banner(plan: planning.Plan, port: int) -> None:
    inv = planning.mode_invocation(plan, "debug")
    click.echo(
        f"debugpy will wait for an editor on 127.0.0.1:{port}; the command is\n  "
        f"{shlex.join(inv.argv)}",
        err=True,
    )


def _check_port(plan: planning.Plan, port: int, ended: threading.Event) -> None:
    """The launch.json once debugpy answers on the port; what to do when it never does.
    The check's connection stays open until the run has `ended` (see debugger_connection)."""
    inv = planning.mode_invocation(plan, "debug")
    held = replay.debugger_connection(port, timeout_s=DEBUG_PORT_WAIT_S)
    if held is not None:
        with held:
            click.echo("debugpy answers; VS Code .vscode/launch.json:", err=True)
            click.echo(json.dumps(planning.launch_config(inv, port), indent=2))
            ended.wait()
        return
    click.echo(
        f"nothing answers on 127.0.0.1:{port} after {DEBUG_PORT_WAIT_S:g} s: the engine may "
        "have no bridge network to publish the port on ('docker network ls'), or the "
        "command failed before debugpy started (see its output above). Stop it with Ctrl-C; "
        "then use --shell to debug inside the container, or --print --debug to run it on "
        "an engine with a bridge network",
        err=True,
    )


def _kept(plan: planning.Plan, keep: bool) -> None:
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
