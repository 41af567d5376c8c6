"""The pipeline spec: a DAG of module jobs, the grammar of a job input, and the Plan.

    name: wordstats
    inputs:  {corpus: {type: directory}}
    outputs: {report: "${{jobs.top.outputs.report}}"}
    jobs:
      split: {module: split.yaml, inputs: {corpus: "${{inputs.corpus}}"}}
      count: {module: wordcount.yaml, inputs: {corpus: "${{jobs.split.outputs.parts}}"}}

Everything here is pure. Loading, checking and planning one (load_pipeline,
check_pipeline, plan) are in pipelinecheck.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from containerexec.model import placeholders
from containerexec.model.spec import (
    NAME_RE,
    InputPort,
    Model,
    ModuleSpec,
    Scalar,
)

# A job name, or 'parent/child' for a job of an Azure ML pipeline component (names.JOB_RE).
JOB_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}(/[A-Za-z_][A-Za-z0-9_]{0,127}){0,7}$"

ModuleLoader = Callable[[str], tuple[ModuleSpec, Path | None]]
"""`module:` as written in a job -> (its spec, the spec file or None for an image)."""


class JobSpec(Model):
    """One node of the DAG: a module and where each of its inputs comes from."""

    module: str = Field(
        min_length=1,
        description="A module spec path (relative to the "
        "pipeline file) or an image reference that carries its spec.",
    )
    inputs: dict[Annotated[str, Field(pattern=NAME_RE)], Scalar] = Field(
        default_factory=dict,
        description="A literal, ${{inputs.NAME}} or ${{jobs.JOB.outputs.NAME}} per input.",
    )
    description: str = ""


class PipelineSpec(Model):
    """A named DAG of jobs with its own typed inputs and outputs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)
    version: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else str(v))] = (
        "0.0.0"
    )
    description: str = ""
    inputs: dict[Annotated[str, Field(pattern=NAME_RE)], InputPort] = Field(default_factory=dict)
    outputs: dict[Annotated[str, Field(pattern=NAME_RE)], str] = Field(
        default_factory=dict, description="Each bound to a job output: ${{jobs.JOB.outputs.NAME}}."
    )
    jobs: dict[Annotated[str, Field(pattern=JOB_NAME_RE)], JobSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Source:
    """Where one job input gets its value."""

    kind: Literal["literal", "input", "job", "template"]
    value: Any = None  # the literal, or the template text
    name: str = ""  # the pipeline input, or the upstream job
    output: str = ""  # the upstream job's output

    def ref(self) -> str:
        """'jobs.a.outputs.o' or 'inputs.x' as the grammar writes it; a literal's repr."""
        if self.kind in ("input", "job"):
            kind: placeholders.Kind = "jobs" if self.kind == "job" else "inputs"
            return str(placeholders.Ref(kind, self.name, self.output))
        return repr(self.value)


@dataclass(frozen=True)
class PlannedJob:
    name: str
    module: ModuleSpec
    module_path: Path | None
    inputs: dict[str, Source]
    needs: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """A checked pipeline: its jobs with loaded modules, in a valid order."""

    pipeline: PipelineSpec
    path: str
    spec_dir: Path
    jobs: dict[str, PlannedJob]
    outputs: dict[str, Source]  # pipeline output -> the job output it takes
    order: list[str] = field(default_factory=list)

    def downstream(self, job: str) -> set[str]:
        """Every job that needs `job`, directly or not."""
        out: set[str] = set()
        frontier = [job]
        while frontier:
            current = frontier.pop()
            for j in self.jobs.values():
                if current in j.needs and j.name not in out:
                    out.add(j.name)
                    frontier.append(j.name)
        return out

    def output_type(self, name: str) -> str:
        src = self.outputs[name]
        return self.jobs[src.name].module.outputs[src.output].type


def parse_value(text: Any) -> Source:
    """A job input as written -> its Source; ValueError says what is wrong with it."""
    if not isinstance(text, str) or "${{" not in text:
        return Source("literal", text)
    refs = placeholders.allowed_refs(text, "pipeline")
    ref = placeholders.whole(text)
    if ref is not None:
        if ref.kind == "jobs":
            return Source("job", name=ref.name, output=ref.output)
        return Source("input", name=ref.name)
    if any(r.kind == "jobs" for r in refs):
        raise ValueError(f"'{text}': a job output must be the whole value, not part of a string")
    return Source("template", text)


def input_refs(value: Any) -> list[str]:
    """The pipeline inputs a job input refers to: '${{inputs.a}}-${{inputs.b}}' -> ['a', 'b']."""
    if not isinstance(value, str):
        return []
    return [
        p.ref.name for p in placeholders.find(value) if p.ref is not None and p.ref.kind == "inputs"
    ]


def render_template(text: str, values: Mapping[str, Any]) -> str:
    """'run-${{inputs.tag}}' with {'tag': 3} -> 'run-3'; KeyError names an unset input."""
    texts = {f"inputs.{name}": placeholders.as_text(v) for name, v in values.items()}
    return placeholders.render(text, texts)


def compatible(produced: str, wanted: str) -> bool:
    """Can a value of type `produced` feed an input of type `wanted`?"""
    if produced == wanted:
        return True
    if produced in ("file", "directory") or wanted in ("file", "directory"):
        return False
    return wanted == "string" or (produced == "integer" and wanted == "number")
