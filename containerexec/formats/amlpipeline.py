"""An Azure ML pipeline job (YAML) -> our PipelineSpec and the modules of its jobs.

    type: pipeline
    inputs:  {data: {type: uri_folder, path: ./data}, epochs: 20}
    outputs: {model: {mode: upload}}
    jobs:
      train: {component: ./train.yml, inputs: {data: "${{parent.inputs.data}}"},
              outputs: {model: "${{parent.outputs.model}}"}}
      score: {component: {type: command, ...inline...},
              inputs: {model: "${{parent.jobs.train.outputs.model}}"}}

`${{parent.inputs.x}}` becomes `${{inputs.x}}`, `${{parent.jobs.J.outputs.o}}`
becomes `${{jobs.J.outputs.o}}`, and a job output bound to `${{parent.outputs.X}}`
becomes the pipeline output X. A reference to a job or output that does not exist
is located in the file, with the nearest name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerexec.errors import PipelineError, Problem, SpecError
from containerexec.formats.azureml import (
    TYPES,
    Converted,
    convert_component,
    load_component,
    read_mapping,
)
from containerexec.model import yamlsource
from containerexec.model.pipeline import ModuleLoader, PipelineSpec
from containerexec.model.pipelinecheck import validate_pipeline

Loc = yamlsource.Loc
_PARENT = re.compile(r"\$\{\{\s*(?:parent\.)?(inputs|outputs|jobs)\.([^}\s]*?)\s*\}\}")
_JOB_REF = re.compile(r"([^.]+)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)")
_PIPELINE_KEYS = {
    "$schema", "type", "name", "display_name", "description", "inputs", "outputs", "jobs",
}  # fmt: skip
_JOB_KEYS = {"type", "component", "inputs", "outputs", "description"}


@dataclass
class ConvertedPipeline:
    """A converted pipeline: the spec, each job's module, and what was ignored or renamed."""

    spec: PipelineSpec
    data: dict[str, Any]
    modules: dict[str, tuple[Converted, Path]]  # job module ref -> module, its file
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def loader(self) -> ModuleLoader:
        """The ModuleLoader for plan(): a job's `module:` names its converted component."""

        def load(ref: str) -> tuple[Any, Path | None]:
            converted, path = self.modules[ref]
            return converted.spec, path

        return load


def job_name(name: str) -> str:
    """An Azure ML job name as our names allow it ('train-job' -> 'train_job')."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else f"_{out}"


def load_pipeline(path: Path, image_map: Mapping[str, str]) -> ConvertedPipeline:
    """Read and convert a pipeline job file; PipelineError lists every problem, located."""
    src = read_mapping(path, PipelineError)
    return _Pipeline(src, path, image_map).run()


class _Pipeline:
    def __init__(self, src: yamlsource.Located, path: Path, image_map: Mapping[str, str]) -> None:
        self.src, self.path, self.base, self.image_map = src, path, path.parent, image_map
        self.data: dict[str, Any] = src.data
        self.problems: list[Problem] = []
        self.ignored: list[str] = []
        self.notes: list[str] = []
        self.modules: dict[str, tuple[Converted, Path]] = {}

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> None:
        self.problems.append(self.src.problem(loc, message, key=key))

    def ignore(self, mapping: Mapping[str, Any], known: set[str], loc: Loc) -> None:
        self.ignored += [yamlsource.dotted((*loc, k)) for k in mapping if k not in known]

    def run(self) -> ConvertedPipeline:
        d = self.data
        self.ignore(d, _PIPELINE_KEYS, ())
        raw_jobs = d.get("jobs")
        if not isinstance(raw_jobs, dict) or not raw_jobs:
            self.problem(("jobs",), "expected a mapping of jobs", key=True)
            raw_jobs = {}
        names = {j: job_name(str(j)) for j in raw_jobs}
        renamed = [f"'{a}' is '{b}'" for a, b in names.items() if a != b]
        if renamed:
            self.notes.append(f"job names: {', '.join(renamed)} here")
        name = str(d.get("name") or d.get("display_name") or self.path.stem)
        out: dict[str, Any] = {
            "name": re.sub(r"[^a-z0-9_.-]", "-", name.lower()).lstrip("-_.")[:64] or "pipeline",
            "description": str(d.get("description") or ""),
            "inputs": self.inputs(d.get("inputs") or {}),
            "outputs": {},
            "jobs": {},
        }
        components = {j: self.component(str(j), job) for j, job in raw_jobs.items()}
        for j, job in raw_jobs.items():
            if isinstance(job, dict):
                out["jobs"][names[j]] = self.job(str(j), job, names, components, out)
        declared = d.get("outputs") or {}
        for o in declared if isinstance(declared, dict) else {}:
            if o not in out["outputs"]:
                self.notes.append(f"pipeline output '{o}' is bound by no job; nothing fills it")
        if self.problems:
            raise PipelineError(str(self.path), sorted(self.problems, key=lambda p: p.line))
        spec = validate_pipeline(out, self.base, str(self.path))
        return ConvertedPipeline(spec, out, self.modules, self.ignored, self.notes)

    def inputs(self, raw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in raw.items() if isinstance(raw, dict) else ():
            loc: Loc = ("inputs", name)
            if not isinstance(value, dict):
                kind = {bool: "boolean", int: "integer", float: "number"}.get(type(value), "string")
                out[name] = {"type": kind, "default": value}
                continue
            self.ignore(value, {"type", "path", "default", "optional", "description"}, loc)
            found = TYPES.get(value.get("type", "uri_folder"))
            if found is None:
                self.problem((*loc, "type"), f"expected one of {', '.join(TYPES)}")
                continue
            port: dict[str, Any] = {"type": found}
            default = value.get("path", value.get("default"))
            if isinstance(default, str) and default.startswith(("azureml:", "http:", "https:")):
                self.notes.append(
                    f"input '{name}' is at '{default}', not here: give it with -i {name}=PATH"
                )
            elif default is not None:
                # Absolute, so the converted pipeline can be written anywhere.
                port["default"] = str((self.base / str(default)).resolve())
            if value.get("optional"):
                port["optional"] = True
            out[name] = port
        return out

    def component(self, job: str, raw: Any) -> str | None:
        """Convert the job's component; return the `module:` ref it is known by."""
        loc: Loc = ("jobs", job)
        if not isinstance(raw, dict):
            self.problem(loc, "expected a mapping with 'component'")
            return None
        self.ignore(raw, _JOB_KEYS, loc)
        if raw.get("type", "command") not in ("command", "component"):
            self.problem((*loc, "type"), f"only command jobs run here, got '{raw['type']}'")
            return None
        comp = raw.get("component")
        try:
            if isinstance(comp, dict):
                ref = f"{self.path.name}#jobs.{job}"
                converted = convert_component(
                    self.src, (*loc, "component"), self.base, self.image_map, default_name=job
                )
                self._record(ref, converted, self.path, f"jobs.{job}.component")
                return ref
            if isinstance(comp, str) and not comp.startswith("azureml:"):
                file = self.base / comp
                if not file.is_file():
                    self.problem((*loc, "component"), f"no component file at '{file}'")
                    return None
                ref = comp
                if ref not in self.modules:
                    self._record(ref, load_component(file, self.image_map), file, comp)
                return ref
        except SpecError as exc:
            self.problems += exc.problems
            return None
        if comp is None:
            self.problem(
                loc,
                "expected 'component:' (a file or an inline component); a command job "
                "without one is not supported here: move its command into a component",
            )
            return None
        self.problem(
            (*loc, "component"),
            f"expected a component file (./component.yml) or an inline component, got "
            f"'{comp}'; a registered component has no local file: point at its YAML",
        )
        return None

    def _record(self, ref: str, converted: Converted, file: Path, where: str) -> None:
        self.modules[ref] = (converted, file)
        self.ignored += [f"{where}: {i}" for i in converted.ignored]
        self.notes += [f"{where}: {n}" for n in converted.notes]

    def job(
        self,
        job: str,
        raw: dict[str, Any],
        names: Mapping[str, str],
        components: Mapping[str, str | None],
        out: dict[str, Any],
    ) -> dict[str, Any]:
        ref = components.get(job)
        module = self.modules[ref][0].spec if ref else None
        inputs: dict[str, Any] = {}
        for name, value in (raw.get("inputs") or {}).items():
            loc: Loc = ("jobs", job, "inputs", name)
            if isinstance(value, dict):
                self.ignore(value, {"type", "path"}, loc)
                value = value.get("path")
            if value is None:
                continue
            port = module.inputs.get(name) if module else None
            if port and port.type in ("file", "directory") and "${{" not in str(value):
                value = str((self.base / str(value)).resolve())
            inputs[name] = self.reference(value, loc, names, components)
        for name, value in (raw.get("outputs") or {}).items():
            loc = ("jobs", job, "outputs", name)
            m = _PARENT.fullmatch(value.strip()) if isinstance(value, str) else None
            if m and m.group(1) == "outputs":
                out["outputs"][m.group(2)] = f"${{{{jobs.{names[job]}.outputs.{name}}}}}"
            elif module is not None and name not in module.outputs:
                self.problem(loc, f"job '{job}' has no output '{name}'", key=True)
            else:
                self.ignored.append(yamlsource.dotted(loc))
        spec: dict[str, Any] = {"module": ref or "missing", "inputs": inputs}
        if raw.get("description"):
            spec["description"] = str(raw["description"])
        return spec

    def reference(
        self,
        value: Any,
        loc: Loc,
        names: Mapping[str, str],
        components: Mapping[str, str | None],
    ) -> Any:
        """A job input's value with parent.* references in our grammar; bad ones located."""
        if not isinstance(value, str):
            return value

        def replace(m: re.Match[str]) -> str:
            kind, rest = m.group(1), m.group(2)
            if kind != "jobs":
                return f"${{{{{kind}.{rest}}}}}"
            jm = _JOB_REF.fullmatch(rest)
            if jm is None:
                self.problem(loc, f"'{m.group(0)}': expected parent.jobs.JOB.outputs.NAME")
                return m.group(0)
            job, output = jm.group(1), jm.group(2)
            if job not in names:
                near = _nearest(job, [n for n in names if n != loc[1]])
                hint = f"did you mean '{near}'?" if near else f"jobs: {', '.join(names)}"
                self.problem(loc, f"'{m.group(0)}': there is no job '{job}'; {hint}")
            else:
                ref = components.get(job)
                outputs = self.modules[ref][0].spec.outputs if ref else None
                if outputs is not None and output not in outputs:
                    known = ", ".join(outputs) or "none"
                    self.problem(
                        loc, f"'{m.group(0)}': job '{job}' has no output '{output}' ({known})"
                    )
            return f"${{{{jobs.{names.get(job, job)}.outputs.{output}}}}}"

        return _PARENT.sub(replace, value)


def _nearest(name: str, known: list[str]) -> str | None:
    """The job meant: same letters and digits ('componentA' -> 'component_a'), else close."""

    def bare(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    same = [k for k in known if bare(k) == bare(name)]
    near = same or difflib.get_close_matches(name, known, n=1, cutoff=0.3)
    return near[0] if near else None
