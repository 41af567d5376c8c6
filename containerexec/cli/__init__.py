"""The `containerexec` command: a thin click group, the only place that prints or exits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from containerexec.engine.base import Engine
from containerexec.engine.docker import DockerEngine
from containerexec.errors import ContainerExecError
from containerexec.store.tree import RunStore


@dataclass
class App:
    """What every command shares: where runs are recorded and how to reach the engine."""

    runs_dir: Path
    _engine: Engine | None = field(default=None, repr=False)
    # Registry retry backoff; None = the library's own. Tests pass obj=App(..., sleep=...).
    sleep: Callable[[float], object] | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        """The Docker engine, connected on first use (so `validate` needs no engine)."""
        if self._engine is None:
            engine = DockerEngine.from_env()
            engine.ping()
            self._engine = engine
        return self._engine

    @property
    def store(self) -> RunStore:
        return RunStore(self.runs_dir)


class Group(click.Group):
    """Maps our errors to 'Error: ...' on stderr and their exit status; no tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ContainerExecError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Ctrl-C before any container started (a build, a pull): the shell's status
            # for SIGINT, as a run cancelled later exits; not click's "Aborted!" and 1.
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".containerexec"),
    envvar="CONTAINEREXEC_RUNS_DIR",
    show_default=True,
    help="Where run records, logs and default outputs are kept.",
)
@click.version_option(package_name="containerexec")
@click.pass_context
def cli(ctx: click.Context, runs_dir: Path) -> None:
    """Run pipeline modules in containers: pinned images, parallel shards, exact replay."""
    given = ctx.obj if isinstance(ctx.obj, App) else None  # an embedding caller's (tests)
    ctx.obj = App(runs_dir=runs_dir, sleep=given.sleep if given else None)


def main() -> None:
    cli.main(prog_name="containerexec")
    sys.exit(0)


from containerexec.cli import (  # noqa: E402,F401  (registers the commands)
    authoring,
    convert,
    environment,
    images,
    modules,
    pipeline,
    repro,
    runs,
)
