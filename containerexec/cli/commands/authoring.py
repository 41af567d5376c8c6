"""Module tooling: init, spec build, pipeline export (listed by the pipeline group)."""

from __future__ import annotations

from pathlib import Path

import click

from containerexec.authoring.export import export_code
from containerexec.authoring.modules import ContainerModule, Module
from containerexec.authoring.pipelines import Pipeline
from containerexec.authoring.scaffold import init_project
from containerexec.authoring.targets import load_target
from containerexec.cli.lazy import Lazy, LazyGroup
from containerexec.errors import UsageError


@click.command()
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the NAME folder.",
)
def init(name: str, parent: Path) -> None:
    """Write a working module project NAME/: source, spec, Dockerfile, sample data, a test."""
    folder = init_project(name, parent)
    click.echo(
        f"created {folder}/ (module '{name}')\n"
        f"  run it:   containerexec run {folder}/{name}.yaml -i data={folder}/data\n"
        f"  test it:  python3 -m pytest {folder}"
    )


@click.group(cls=LazyGroup, lazy={"convert": Lazy("containerexec.cli.commands.convert:convert")})
def spec() -> None:
    """Module specs generated from code."""


@spec.command("build")
@click.argument("target", metavar="SOURCE.py:NAME")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the YAML ('-' for stdout; default: NAME.yaml beside SOURCE).",
)
def spec_build(target: str, output: Path | None) -> None:
    """Write the YAML spec of a @module function, a ContainerModule, or a @pipeline."""
    obj = load_target(target)
    if isinstance(obj, Pipeline):
        out = output or Path(target.rpartition(":")[0]).parent / f"{obj.spec.name}.yaml"
        click.echo(
            f"wrote {obj.write(out)} (pipeline '{obj.spec.name}', {len(obj.spec.jobs)} jobs)"
        )
        return
    if not isinstance(obj, Module | ContainerModule) and not (
        isinstance(obj, type) and issubclass(obj, ContainerModule)
    ):
        raise UsageError(
            f"'{target}' is not a module: decorate the function with "
            "@module(image=...) or subclass ContainerModule"
        )
    made = Module.from_func(obj)
    if str(output) == "-":
        click.echo(made.to_yaml(Path.cwd() / "stdout.yaml"), nl=False)
        return
    out = output or Path(target.rpartition(":")[0]).parent / f"{made.name}.yaml"
    made.write(out)
    click.echo(
        f"wrote {out} (module '{made.name}': {len(made.spec.inputs)} inputs, "
        f"{len(made.spec.outputs)} outputs)"
    )


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the Python ('-' for stdout; default: FILE with .py).",
)
def export(file: Path, output: Path | None) -> None:
    """Write Python code (@pipeline and from_yaml) that builds and runs this pipeline."""
    if str(output) == "-":
        click.echo(export_code(file, Path.cwd() / "stdout.py"), nl=False)
        return
    out = output or file.with_suffix(".py")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export_code(file, out))
    click.echo(f"wrote {out}; run it: python3 {out} -i NAME=VALUE -o NAME=PATH")
