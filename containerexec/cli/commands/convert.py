"""`containerexec spec convert`: Azure ML files to our specs, and our modules to Azure ML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

from containerexec.cli.formats import (
    component_map_option,
    image_map,
    image_map_option,
    load_aml_pipeline,
    report,
)
from containerexec.errors import UsageError
from containerexec.formats import azureml, toaml
from containerexec.formats.detect import detect_file
from containerexec.model.spec import load_spec


@click.command("convert")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to",
    type=click.Choice(["containerexec", "aml"]),
    help="The format to write (default: the other one: an Azure ML file becomes ours).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write ('-' or nothing: standard output; a pipeline needs a file, and "
    "its modules are written beside it).",
)
@image_map_option
@component_map_option
def convert(file: Path, to: str | None, output: Path | None) -> None:
    """Write FILE in the other format: an Azure ML command component or pipeline job as our
    module or pipeline spec (what `run` runs), or our module spec as an Azure ML command
    component."""
    kind = detect_file(file)
    to = to or ("aml" if kind == "containerexec" else "containerexec")
    if (kind == "containerexec") != (to == "aml"):
        raise UsageError(f"'{file}' is already in the {to} format")
    out_dir = (output.parent if output and str(output) != "-" else Path.cwd()).resolve()
    if kind == "containerexec":
        data, notes = toaml.to_component(load_spec(file), file.parent, out_dir)
        report(str(file), [], notes)
        _write(data, output)
    elif kind == "aml-component":
        converted = azureml.load_component(file, image_map())
        report(str(file), converted.ignored, converted.notes)
        _write(converted.data, output)
    else:
        _pipeline(file, output)


def _pipeline(file: Path, output: Path | None) -> None:
    if output is None or str(output) == "-":
        raise UsageError(
            f"'{file}' is a pipeline: give -o PIPELINE.yaml (its modules go beside it)"
        )
    converted = load_aml_pipeline(file)
    report(str(file), converted.ignored, converted.notes)
    data = dict(converted.data)
    written: dict[str, str] = {}
    for ref, (module, _path) in converted.modules.items():
        name = f"{module.spec.name}.yaml"
        if name in written.values() or output.parent / name == output:
            name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)}.yaml"
        written[ref] = name
        _write(module.data, output.parent / name)
    data["jobs"] = {
        job: {**spec, "module": written.get(spec["module"], spec["module"])}
        for job, spec in data["jobs"].items()
    }
    _write(data, output)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a command's script) as literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _write(data: dict[str, Any], output: Path | None) -> None:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}", err=True)
