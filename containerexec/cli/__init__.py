"""The `containerexec` command: a thin click group, the only place that prints or exits.

Its commands live in the modules of cli/commands/ and are imported when they run
(COMMANDS below), so `--version` and `--help` load neither the Docker SDK nor
the run core. A command module never imports this one: it declares its own
click command, and COMMANDS maps the name to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from containerexec.cli.app import App
from containerexec.cli.lazy import Lazy, LazyGroup
from containerexec.errors import ContainerExecError

__all__ = ["COMMANDS", "App", "cli", "main"]

_PKG = "containerexec.cli.commands"
ENGINES = ("docker", "podman")  # engine/factory.py's names, without importing it for --help

# name -> where the command lives, and the first sentence of its help (what --help lists).
COMMANDS: dict[str, Lazy] = {
    "build": Lazy(
        f"{_PKG}.modules:build",
        "Build (or pull) a module's image without running it; print the pinned reference.",
    ),
    "images": Lazy(
        f"{_PKG}.images:images_group",
        "Images containerexec built, pulled or pushed on this engine (default: list them).",
    ),
    "init": Lazy(
        f"{_PKG}.authoring:init",
        "Write a working module project NAME/: source, spec, Dockerfile, sample data, a test.",
    ),
    "inspect": Lazy(
        f"{_PKG}.images:inspect",
        "Print the module spec IMAGE carries (YAML, environment pinned to the image).",
    ),
    "lock": Lazy(
        f"{_PKG}.environment:lock",
        "Resolve the module's environment.python packages for its image (with this host's "
        "pip) and write <module>.lock beside SPEC: exact versions and sha256 of every wheel.",
    ),
    "pipeline": Lazy(
        f"{_PKG}.pipeline:pipeline", "Pipelines: DAGs of module jobs run on this Docker host."
    ),
    "push": Lazy(
        f"{_PKG}.images:push",
        "Push a module's image labelled with its spec; print REGISTRY/REPO@sha256:...",
    ),
    "repro": Lazy(
        f"{_PKG}.repro:repro_command",
        "Replay a recorded shard here, in its exact image (pulled by digest), and say whether "
        "the failure reproduced.",
    ),
    "report": Lazy(
        f"{_PKG}.report:report",
        "Write a run's (or a pipeline run's) report: one HTML file with its timeline, memory "
        "and CPU per shard, and failures with their repro commands; it fetches nothing.",
    ),
    "run": Lazy(
        f"{_PKG}.modules:run",
        "Run a module: every shard in its own container; exits as the command did.",
    ),
    "runs": Lazy(f"{_PKG}.runs:runs", "Recorded runs (in --runs-dir)."),
    "schema": Lazy(
        f"{_PKG}.specs:schema", "Print the JSON Schema of module specs (for editor completion)."
    ),
    "spec": Lazy(f"{_PKG}.authoring:spec", "Module specs generated from code."),
    "validate": Lazy(
        f"{_PKG}.specs:validate",
        "Check a module spec (or SOURCE.py:NAME); list every problem as FILE:LINE:COL.",
    ),
    "worker": Lazy(f"{_PKG}.modules:worker", hidden=True),
}


class Group(LazyGroup):
    """Maps our errors to 'Error: ...' on stderr and their exit status; no tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ContainerExecError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # Ctrl-C (or SIGTERM: Stopped) before any container started (a build, a
            # pull): the shell's status for the signal, as a run cancelled later exits;
            # not click's "Aborted!" and 1.
            status = getattr(exc, "status", 130)
            click.echo("Terminated." if status == 143 else "Interrupted.", err=True)
            ctx.exit(status)


@click.group(cls=Group, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".containerexec"),
    envvar="CONTAINEREXEC_RUNS_DIR",
    show_default=True,
    help="Where run records, logs and default outputs are kept.",
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(ENGINES),
    default=None,
    help="The container engine [default: CONTAINEREXEC_ENGINE, else [engine] name in the "
    "nearest containerexec.toml, else docker].",
)
@click.version_option(package_name="containerexec")
@click.pass_context
def cli(ctx: click.Context, runs_dir: Path, engine_name: str | None) -> None:
    """Run pipeline modules in containers: pinned images, parallel shards, exact replay."""
    given = ctx.obj if isinstance(ctx.obj, App) else None  # an embedding caller's (tests)
    if given is None:
        ctx.obj = App(runs_dir=runs_dir, engine_name=engine_name)
    else:  # its engine factory and sleep stay; --runs-dir is the command line's
        ctx.obj = App(
            runs_dir=runs_dir,
            engine_factory=given.engine_factory,
            sleep=given.sleep,
            engine_name=engine_name or given.engine_name,
        )


def main() -> None:
    cli.main(prog_name="containerexec")
    sys.exit(0)
