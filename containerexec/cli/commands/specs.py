"""Commands on a spec alone, which need no engine: validate, schema."""

from __future__ import annotations

import json
from pathlib import Path

import click

from containerexec.cli.formats import PYTHON_TARGET, image_map_option, load_module_file
from containerexec.model.invocation import glob_mount
from containerexec.model.spec import ModuleSpec


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@image_map_option
def validate(spec: Path) -> None:
    """Check a module spec (or SOURCE.py:NAME); list every problem as FILE:LINE:COL. Needs
    no engine."""
    if PYTHON_TARGET.fullmatch(str(spec)) and not spec.exists():
        from containerexec.cli.commands.authoring import python_module

        m, _ = python_module(str(spec))
    else:
        m = load_module_file(spec)
    shards = "no array" if m.array is None else "an array"
    click.echo(
        f"{spec}: valid module '{m.name}' {m.version} "
        f"({len(m.inputs)} inputs, {len(m.outputs)} outputs, {shards})"
    )
    if m.array is not None and m.array.python is not None:
        click.echo(f"  array: {m.array.python}() lists the shards in the image when a run starts")
    glob = glob_mount(m)
    if glob is not None:
        click.echo(f"  glob: {glob.describe()}")


@click.command()
def schema() -> None:
    """Print the JSON Schema of module specs (for editor completion)."""
    click.echo(json.dumps(ModuleSpec.model_json_schema(), indent=2, sort_keys=True))
