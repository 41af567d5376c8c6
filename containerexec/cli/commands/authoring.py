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
from containerexec.model.spec import ModuleSpec, parse_spec


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
    """Write the YAML spec of a @module function, a ContainerModule, or a @pipeline.

    The YAML records the source file's sha256: once the file changes, `validate` and
    `run` refuse the YAML until it is built again."""
    obj = _load(target)
    if isinstance(obj, Pipeline):
        out = output or Path(target.rpartition(":")[0]).parent / f"{obj.spec.name}.yaml"
        click.echo(
            f"wrote {obj.write(out)} (pipeline '{obj.spec.name}', {len(obj.spec.jobs)} jobs)"
        )
        return
    made = _module(target, obj)
    if str(output) == "-":
        click.echo(made.to_yaml(Path.cwd() / "stdout.yaml"), nl=False)
        return
    out = output or Path(target.rpartition(":")[0]).parent / f"{made.name}.yaml"
    made.write(out)
    click.echo(
        f"wrote {out} (module '{made.name}': {len(made.spec.inputs)} inputs, "
        f"{len(made.spec.outputs)} outputs)"
    )


def python_module(target: str) -> tuple[ModuleSpec, Path | None]:
    """SOURCE.py:NAME -> the spec `spec build` would write for it (read back as a spec
    file is, so both run the same), and the file it came from."""
    made = _module(target, _load(target))
    return parse_spec(made.to_yaml(made.spec_dir / f"{made.name}.yaml"), target), made.spec_path


def _load(target: str) -> object:
    """The object, read with stand-ins for the packages only its image has (said on stderr)."""
    stood_in: list[str] = []
    obj = load_target(target, stand_ins=stood_in)
    if stood_in:
        click.echo(
            f"note: {target.rpartition(':')[0]} imports {', '.join(stood_in)}, not installed "
            "here: stood in for while reading it (its image must have them)",
            err=True,
        )
    return obj


def _module(target: str, obj: object) -> Module:
    if isinstance(obj, Pipeline):
        raise UsageError(
            f"'{target}' is a pipeline; write it with `containerexec spec build {target}`, "
            "then run it: containerexec pipeline run FILE.yaml"
        )
    if not isinstance(obj, Module | ContainerModule) and not (
        isinstance(obj, type) and issubclass(obj, ContainerModule)
    ):
        raise UsageError(
            f"'{target}' is not a module: decorate the function with "
            "@module(image=...) or subclass ContainerModule"
        )
    made = Module.from_func(obj)
    made.spec_file = made.spec_file.named(target.rpartition(":")[2])  # what to rebuild
    return made


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
