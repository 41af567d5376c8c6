"""Commands that run one module: build, run, and the cluster task's worker."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import click

from containerexec.cli.app import App
from containerexec.cli.formats import PYTHON_TARGET, image_map_option, load_module_file
from containerexec.cli.options import (
    grace_option,
    inputs_option,
    outputs_option,
    overwrite_option,
    pull_option,
)
from containerexec.cli.slurm import again_command, make_scheduler, slurm_options
from containerexec.cli.status import run_status
from containerexec.display.runs import RunDisplay, summary
from containerexec.errors import PullError, UsageError
from containerexec.model.bindings import parse_pairs
from containerexec.model.spec import ModuleSpec, parse_bytes, parse_seconds
from containerexec.run.cache import Cache
from containerexec.run.executor import Executor, RunOptions, secrets_from
from containerexec.run.placement.base import Detached
from containerexec.run.placement.base import Placement as Scheduler
from containerexec.store.tree import RunStore

from .environment import resolve_image
from .images import TransferProgress


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@pull_option
@image_map_option
@click.pass_obj
def build(app: App, spec: Path, pull: str | None) -> None:
    """Build (or pull) a module's image without running it; print the pinned reference."""
    m = load_module_file(spec)
    rec = resolve_image(app, m, spec, pull)
    click.echo(f"{m.name}: {rec.pinned}  ({rec.source}, {rec.ref})")
    if rec.lock_sha256:
        click.echo(f"  python packages: lock sha256:{rec.lock_sha256}")


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@inputs_option
@outputs_option
@click.option("--shard", "shards", metavar="K|K,L|K-L", help="Run only these shards.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="Containers at once.")
@click.option(
    "--batch-size",
    metavar="K|auto",
    help="Run K shards one after another in each container (overrides array.batch_size; "
    "1: one container per shard; auto: chosen from the shard count and --max-parallel).",
)
@click.option("--resume", metavar="RUN", help="Rerun only the shards of RUN that did not succeed.")
@click.option("--no-cache", is_flag=True, help="Run every shard, even when its result is cached.")
@overwrite_option
@click.option(
    "--accept-input-changes",
    is_flag=True,
    help="With --resume: run though the inputs differ from those RUN recorded; each shard "
    "run records the inputs it read.",
)
@click.option(
    "--deadline",
    metavar="DURATION",
    help="Stop the run after this long (e.g. 10m; overrides resources.deadline): no "
    "attempt starts after it, running shards are stopped, exit 124.",
)
@pull_option
@grace_option
@click.option(
    "--log-limit",
    default="16m",
    show_default=True,
    help="Bytes of log kept per shard (the last ones), e.g. 16m.",
)
@click.option(
    "--allow-secret",
    "allowed",
    multiple=True,
    metavar="NAME",
    help="Give a module image's spec this secret from your environment "
    "(specs carried by images get no secret unless allowed).",
)
@image_map_option
@slurm_options
@click.pass_context
def run(
    ctx: click.Context,
    /,
    spec: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    shards: str | None,
    max_parallel: int | None,
    batch_size: str | None,
    resume: str | None,
    no_cache: bool,
    overwrite: bool,
    accept_input_changes: bool,
    deadline: str | None,
    pull: str | None,
    grace: float,
    log_limit: str,
    allowed: tuple[str, ...],
    **where: Any,
) -> None:
    """Run a module: every shard in its own container; exits as the command did.

    SPEC is a spec file, SOURCE.py:NAME (a @module function or a ContainerModule,
    as `spec build` would write it), or the reference of a module image that
    carries its spec (see `containerexec push`).

    An array run exits 0 when every shard succeeded and 1 otherwise; a
    cancelled run (Ctrl-C, SIGTERM) exits 130 or 143; a run past its deadline 124.
    The run id is the last line on stdout (RUN=$(containerexec run ...)). With
    --on slurm the shards run as one Slurm job array, with the same records and
    exit status.
    """
    app: App = ctx.obj
    if accept_input_changes and not resume:
        raise UsageError(
            "--accept-input-changes goes with --resume RUN; a new run has no inputs to compare"
        )

    def notice(text: str) -> None:  # the placement's progress; the display exists by then
        display.note(text)

    scheduler = make_scheduler(app, notice=notice, **where)
    module, spec_path = load_module(app, spec, pull=pull)
    if spec_path is None:
        check_allowed(str(spec), module, allowed)
    module = with_batch_size(module, batch_size)
    raw_in, raw_out = parse_pairs(inputs, "-i"), parse_pairs(outputs, "-o")
    executor, display = prepare_run(app, module, scheduler, cache=not no_cache)
    opts = RunOptions(
        max_parallel=max_parallel,
        shards=shards,
        pull=pull,
        grace_s=grace,
        log_limit_bytes=parse_bytes(log_limit),
        overwrite=overwrite,
        deadline_s=deadline_flag(deadline),
    )
    more = (
        *(("--resume", resume) if resume else ()),
        *(("--batch-size", batch_size) if batch_size else ()),
    )
    with (
        display,
        cancel_on_signals(executor, display, grace, preparing=lambda: not display.planned),
        push_hint(again_command(str(spec), inputs, outputs, where, more)),
    ):
        if resume:  # its bindings stay unless a flag changes one
            started = executor.resume(
                module,
                resume,
                inputs=raw_in,
                outputs=raw_out,
                spec_path=spec_path,
                options=opts,
                accept_input_changes=accept_input_changes,
            )
            for line in started.notices:
                display.note(line)
        else:
            started = executor.start(module, raw_in, raw_out, spec_path=spec_path, options=opts)
        if started.task_size > 1:
            auto = module.array is not None and module.array.batch_size == "auto"
            how = " (batch_size: auto)" if auto else ""
            display.note(f"packing: up to {started.task_size} shards per container{how}")
        try:
            result = started.wait()
        except Detached as detached:
            click.echo(
                f"submitted as {detached.label} {', '.join(detached.job_ids)}; follow it with "
                f"containerexec runs show {detached.run_id}",
                err=True,
            )
            click.echo(detached.run_id)
            return
    summary(result, resume_with=str(spec))
    # The only line of ours on stdout, after the command's own output, for scripts.
    click.echo(result.record.run_id)
    ctx.exit(run_status(result.record))


@contextmanager
def push_hint(command: str) -> Iterator[None]:
    """A failed push (--push-to) ends with the whole command to run again once it is fixed."""
    try:
        yield
    except PullError as exc:
        if exc.operation != "push":
            raise
        advice = f"{exc.detail()}; then run again: {command}"
        raise exc.advised(module=exc.module, attempts=exc.attempts, advice=advice) from None


def with_batch_size(module: ModuleSpec, value: str | None) -> ModuleSpec:
    """The module with --batch-size applied to its array; a bad value is a usage error."""
    if value is None:
        return module
    if module.array is None:
        raise UsageError(f"--batch-size: module '{module.name}' has no array to pack")
    size: int | str = value
    if value != "auto":
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"--batch-size '{value}': expected a whole number >= 1 or 'auto'")
        size = int(value)
    array = module.array.model_copy(update={"batch_size": size})
    return module.model_copy(update={"array": array})


def deadline_flag(value: str | None) -> float | None:
    """--deadline as seconds; a bad duration is a usage error naming the flag."""
    if value is None:
        return None
    try:
        seconds = float(value) if value.replace(".", "", 1).isdigit() else parse_seconds(value)
    except ValueError as exc:
        raise UsageError(f"--deadline '{value}': {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--deadline '{value}': must be more than 0 s")
    return seconds


def check_allowed(ref: str, module: ModuleSpec, allowed: tuple[str, ...]) -> None:
    """A spec that came with an image gets no secret from here unless the user allows it."""
    refused = [n for n in module.secrets if n not in allowed]
    if refused:
        flags = " ".join(f"--allow-secret {n}" for n in refused)
        raise UsageError(
            f"module image '{ref}' asks for secret(s) {', '.join(refused)} from "
            f"your environment; to give them, run again with {flags}"
        )


def load_module(
    app: App, target: Path, *, pull: str | None = None
) -> tuple[ModuleSpec, Path | None]:
    """A spec file, SOURCE.py:NAME (spec build in memory), or an image reference whose
    image carries its spec."""
    text = str(target)
    if PYTHON_TARGET.fullmatch(text) and not target.exists():
        from .authoring import python_module

        return python_module(text)
    if target.exists() or text.endswith((".yaml", ".yml")):
        return load_module_file(target), target
    if not any(c in text for c in "/:@"):
        raise UsageError(
            f"'{text}': no such spec file; to run a module image, give its full "
            "reference: REGISTRY/REPO[:TAG] or REGISTRY/REPO@sha256:DIGEST"
        )
    from containerexec.environment import sharing

    progress = TransferProgress()
    try:
        return sharing.spec_from_image(
            app.engine(),
            str(target),
            pull=pull,
            sleep=app.sleep or time.sleep,
            on_progress=progress,
        ), None
    finally:
        progress.close()


def prepare_run(
    app: App, module: ModuleSpec, scheduler: Scheduler | None = None, *, cache: bool = True
) -> tuple[Executor, RunDisplay]:
    """An Executor wired to a display; secrets come from this process's environment.
    With `cache`, a shard whose cache key is unchanged is served from the shard cache."""
    secrets = secrets_from(module.secrets, os.environ)
    display = RunDisplay(stream_output=module.array is None, total=1)
    executor = Executor(
        app.engine(),
        app.store,
        secrets=secrets,
        on_event=display.event,
        on_line=display.line if module.array is None else None,
        on_build_log=lambda line: (
            click.echo(line, err=True) if line.startswith(("Step", "packages: ")) else None
        ),
        on_pull_progress=TransferProgress(display.note),
        sleep=app.sleep,
        scheduler=scheduler,
        cache=Cache(app.store.cache) if cache else None,
    )
    return executor, display


class Cancellable(Protocol):
    """An Executor, or a pipeline's Orchestrator."""

    def cancel(self, signum: int = ...) -> None: ...


class Notes(Protocol):
    def note(self, text: str) -> None: ...


class Stopped(KeyboardInterrupt):
    """A signal while nothing of the run is running yet: the command ends at once with
    the shell's status for it (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status


@contextmanager
def cancel_on_signals(
    executor: Cancellable,
    display: Notes,
    grace_s: float,
    preparing: Callable[[], bool] | None = None,
) -> Iterator[None]:
    """Ctrl-C or SIGTERM cancels the run cleanly; a second one does not skip the clean-up.
    While `preparing()` (a build or a pull: no container of the run yet), either one
    interrupts at once (exit 130 or 143), which closes the engine's stream and so stops
    the build."""
    seen = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        seen += 1
        if preparing is not None and preparing():
            raise Stopped(128 + signum)
        if seen == 1:
            display.note(
                f"{signal.Signals(signum).name}: stopping running containers "
                f"(grace {grace_s:g} s) ..."
            )
        else:
            display.note("still cleaning up; containers are being stopped and removed")
        executor.cancel(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            # After a cancel, a late Ctrl-C must not turn the clean exit (130/143) into
            # click's "Aborted!" (exit 1) while the summary is printed.
            signal.signal(s, signal.SIG_IGN if seen else h)


@click.command(hidden=True)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--shard", "index", type=click.IntRange(min=0), default=None)
@click.option("--batches", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--batch", type=click.IntRange(min=0), default=None)
@click.pass_context
def worker(
    ctx: click.Context, run_dir: Path, index: int | None, batches: Path | None, batch: int | None
) -> None:
    """Run shard K of the run in RUN_DIR (<runs-dir>/runs/<run id>) here, from its records
    alone: what a cluster's array task calls. With --batches FILE --batch I, run the shards
    listed at I in FILE packed in one container (a packed run's task). Exits 0 when every
    shard succeeded, else 1."""
    app: App = ctx.obj
    if not (run_dir / "run.json").is_file():
        raise UsageError(
            f"'{run_dir}' is not a run folder (no run.json); a worker needs the run store on "
            "a filesystem this machine shares with the one that started the run"
        )
    indices = _worker_shards(index, batches, batch)
    store = RunStore(run_dir.absolute().parent.parent)
    record = store.load_run(run_dir.name)
    app.use_recorded(record.engine.name if record.engine else None)  # the run's engine
    executor = Executor(
        app.engine(),
        store,
        secrets=secrets_from(record.secret_names, os.environ),
        # A pipeline's shards save what they made for later runs, wherever they ran.
        cache=Cache(store.cache) if record.cache else None,
    )
    # A cluster's SIGTERM (a cancel, the time limit) stops and removes the shard's container.
    with cancel_on_signals(executor, _Stderr(), record.grace_s):
        if len(indices) == 1:  # a task of one shard runs it unpacked, whatever its number
            shards = [executor.work(record.run_id, indices[0])]
        else:
            shards = executor.work_batch(record.run_id, indices)
    for shard in shards:
        click.echo(f"shard {shard.index} of run {record.run_id}: {shard.state}", err=True)
    ok = len(shards) == len(indices) and all(s.state == "succeeded" for s in shards)
    ctx.exit(0 if ok else 1)


def _worker_shards(index: int | None, batches: Path | None, batch: int | None) -> list[int]:
    """The shard indices a worker runs: --shard K, or the list at --batch I of --batches."""
    if index is not None:
        if batches is not None or batch is not None:
            raise UsageError("worker: give --shard K, or --batches FILE with --batch I, not both")
        return [index]
    if batches is None or batch is None:
        raise UsageError("worker: give --shard K, or --batches FILE with --batch I")
    try:
        plan = json.loads(batches.read_text())
        listed = plan[batch]
    except (OSError, ValueError, IndexError, TypeError) as exc:
        raise UsageError(f"worker: no batch {batch} in '{batches}' ({exc})") from None
    if not (isinstance(listed, list) and listed and all(isinstance(i, int) for i in listed)):
        raise UsageError(f"worker: batch {batch} in '{batches}' is not a list of shard indices")
    return listed


class _Stderr:
    def note(self, text: str) -> None:
        click.echo(text, err=True)
