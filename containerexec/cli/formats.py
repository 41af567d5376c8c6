"""The one loader of spec files in any format we read (ours, Azure ML), --image-map and
--component-map.

Every command that takes a module or pipeline file loads it here, so an Azure ML
file works wherever ours does, and what a local run ignores is said once per file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from containerexec.errors import PipelineError, UsageError
from containerexec.formats.detect import detect_file
from containerexec.model.spec import ModuleSpec, load_spec

if TYPE_CHECKING:
    from containerexec.formats.amlpipeline import ConvertedPipeline
    from containerexec.model.pipeline import ModuleLoader, Plan

# The Azure ML readers and the pipeline model are imported where a file needs them:
# `validate` of one of our specs then loads only the module model (start-up time).

F = TypeVar("F", bound=Callable[..., Any])
_MAP_KEY = "containerexec.image_map"
_COMPONENTS_KEY = "containerexec.component_map"
_SAID_KEY = "containerexec.formats_said"
# `run` and `validate` also take a Python module: SOURCE.py:NAME (commands/authoring.py).
PYTHON_TARGET = re.compile(r".+\.py:[A-Za-z_][A-Za-z0-9_]*")


def _kept_option(flag: str, key: str, metavar: str, help: str) -> Callable[[F], F]:
    """A repeatable option kept in the context for the loaders below, not passed along."""

    def keep(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
        ctx.meta[key] = value

    return click.option(
        flag, multiple=True, expose_value=False, callback=keep, metavar=metavar, help=help
    )


def _kept(key: str) -> tuple[str, ...]:
    ctx = click.get_current_context(silent=True)
    return tuple(ctx.meta.get(key, ())) if ctx else ()


image_map_option = _kept_option(
    "--image-map",
    _MAP_KEY,
    "NAME=IMAGE|FILE",
    "Azure ML files: the local image of a registered environment (or of an image "
    "reference), or a YAML file of NAME: IMAGE lines (repeatable).",
)
component_map_option = _kept_option(
    "--component-map",
    _COMPONENTS_KEY,
    "NAME=FILE|FILE",
    "Azure ML pipelines: the local YAML file of a registered component "
    "(azureml:NAME:VERSION; NAME:VERSION=FILE maps one version), or a YAML file of "
    "NAME: FILE lines (repeatable).",
)


def component_map() -> dict[str, Path]:
    """The --component-map of the running command (empty outside one)."""
    from containerexec.formats import azureml

    return azureml.load_component_map(_kept(_COMPONENTS_KEY))


def image_map() -> dict[str, str]:
    """The --image-map of the running command (empty outside one)."""
    from containerexec.formats import azureml

    return azureml.load_image_map(_kept(_MAP_KEY))


def load_module_file(path: Path) -> ModuleSpec:
    """A module spec file: ours, or an Azure ML command component (converted)."""
    kind = detect_file(path)
    if kind == "containerexec":
        return load_spec(path)
    if kind == "aml-pipeline":
        raise UsageError(
            f"'{path}' is an Azure ML pipeline job; run it: containerexec pipeline run {path}"
        )
    from containerexec.formats import azureml

    converted = azureml.load_component(path, image_map())
    report(str(path), converted.ignored, converted.notes)
    return converted.spec


def load_plan(file: Path, loader: ModuleLoader) -> Plan:
    """A checked pipeline: ours (modules through `loader`), or an Azure ML pipeline job."""
    from containerexec.model.pipelinecheck import check_pipeline, plan

    kind = detect_file(file)
    if kind == "containerexec":
        return check_pipeline(file, load_module=loader)
    if kind == "aml-component":
        raise UsageError(f"'{file}' is an Azure ML component; run it: containerexec run {file}")
    converted = load_aml_pipeline(file)
    report(str(file), converted.ignored, converted.notes)
    try:
        return plan(converted.spec, file.parent, load_module=converted.loader(), path=str(file))
    except PipelineError as exc:
        raise PipelineError(str(file), exc.problems) from None


def load_aml_pipeline(file: Path) -> ConvertedPipeline:
    """An Azure ML pipeline job converted, with this command's maps; its parallel jobs
    call their driver as a @module's function is called (authoring/functions.py)."""
    from containerexec.authoring.functions import function_call
    from containerexec.formats import amlpipeline

    return amlpipeline.load_pipeline(file, image_map(), component_map(), function_call)


def report(path: str, ignored: list[str], notes: list[str]) -> None:
    """What a local run does not honour, once per file and command, on stderr."""
    ctx = click.get_current_context(silent=True)
    said: set[str] = ctx.meta.setdefault(_SAID_KEY, set()) if ctx else set()
    if path in said:
        return
    said.add(path)
    if ignored:
        click.echo(
            f"warning: {path}: ignored here (a local run cannot honour them): "
            + ", ".join(ignored),
            err=True,
        )
    for note in notes:
        click.echo(f"note: {path}: {note}", err=True)
