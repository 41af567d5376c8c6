"""Which format a YAML file is written in: ours, or an Azure ML component or pipeline job."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from containerexec.errors import UsageError
from containerexec.model import yamlsource

Format = Literal["containerexec", "aml-component", "aml-pipeline"]
_SCHEMAS: dict[str, Format] = {
    "commandComponent.schema.json": "aml-component",
    "pipelineJob.schema.json": "aml-pipeline",
}


def detect(data: Any, path: str = "") -> Format:
    """'aml-component' for `$schema: .../commandComponent.schema.json` or `type: command`,
    'aml-pipeline' for `.../pipelineJob.schema.json` or `type: pipeline`, else ours.

    Our own specs have no `type` and no `$schema`. Another Azure ML schema (a command
    job, a parallel component, ...) is a UsageError that names it.
    """
    if not isinstance(data, dict):
        return "containerexec"
    schema = str(data.get("$schema", ""))
    if schema:
        for suffix, kind in _SCHEMAS.items():
            if schema.endswith(suffix):
                return kind
        if "azureml" in schema:
            raise UsageError(
                f"{path}: '{schema.rsplit('/', 1)[-1]}' files are not supported; containerexec "
                "runs Azure ML command components and pipeline jobs"
            )
    if data.get("type") == "command":
        return "aml-component"
    if data.get("type") == "pipeline":
        return "aml-pipeline"
    return "containerexec"


def detect_file(path: Path) -> Format:
    """The format of a YAML file; an unreadable one is left to our loader to report."""
    try:
        src = yamlsource.parse(path.read_text(), str(path))
    except OSError:
        return "containerexec"
    return "containerexec" if src.problems else detect(src.data, str(path))
