"""An Azure ML pipeline job (YAML) -> our PipelineSpec and the modules of its jobs.

    type: pipeline
    inputs:  {data: {type: uri_folder, path: ./data}, epochs: 20}
    outputs: {model: {mode: upload}}
    jobs:
      train: {component: ./train.yml, inputs: {data: "${{parent.inputs.data}}"},
              outputs: {model: "${{parent.outputs.model}}"}}
      score: {component: {type: command, ...inline...},
              inputs: {model: "${{parent.jobs.train.outputs.model}}"}}
      report: {command: "cat ${{inputs.m}}/x > ${{outputs.r}}/r", environment: ...,
               inputs: {m: "${{parent.jobs.score.outputs.s}}"}, outputs: {r: {type: uri_folder}}}
      check: {component: "azureml:checker:2", ...}     (a file through the component map)

`${{parent.inputs.x}}` becomes `${{inputs.x}}`, `${{parent.jobs.J.outputs.o}}`
becomes `${{jobs.J.outputs.o}}`, and a job output bound to `${{parent.outputs.X}}`
becomes the pipeline output X. A reference to a job or output that does not exist
is located in the file, with the nearest name. A job with its own `command` and no
`component` is an inline component whose ports are typed from its bindings; a
registered component (`azureml:NAME:VERSION`, `azureml:NAME@latest`) is read from
the file the component map gives it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerexec.errors import PipelineError, Problem, SpecError
from containerexec.formats import amlparallel
from containerexec.formats import amlsubdag as subdag
from containerexec.formats.azureml import (
    TYPES,
    Converted,
    convert_component,
    load_component,
    mapped_component,
    read_mapping,
)
from containerexec.model import placeholders, yamlsource
from containerexec.model.pipeline import ModuleLoader, PipelineSpec
from containerexec.model.pipelinecheck import validate_pipeline

Loc = yamlsource.Loc
_PARENT = subdag.PARENT
_JOB_REF = re.compile(r"([^.]+)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)")
_PIPELINE_KEYS = {
    "$schema", "type", "name", "display_name", "description", "inputs", "outputs", "jobs",
}  # fmt: skip
_JOB_KEYS = {"type", "component", "inputs", "outputs", "description"}
# An inline command job also carries these component fields of its own.
_INLINE_KEYS = {"command", "environment", "code", "environment_variables", "name", "display_name"}
_OUR_TYPES = {ours: aml for aml, ours in TYPES.items()}  # 'directory' -> 'uri_folder'


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


def load_pipeline(
    path: Path,
    image_map: Mapping[str, str],
    component_map: Mapping[str, Path] | None = None,
    python: subdag.PythonCall | None = None,
) -> ConvertedPipeline:
    """Read and convert a pipeline job file; PipelineError lists every problem, located.

    `component_map` gives registered components (NAME:VERSION, NAME@LABEL or NAME) their file;
    `python` makes the command of a parallel job's mini-batches (amlparallel.py).
    """
    src = read_mapping(path, PipelineError)
    top = _Pipeline(src, path, image_map, component_map or {}, _Scope(path.parent, python=python))
    out = top.convert()
    if top.problems:
        problems = sorted(top.problems, key=lambda p: (p.path != str(path), p.path, p.line))
        raise PipelineError(str(path), problems)
    spec = validate_pipeline(out, path.parent, str(path))
    # A component used twice is read twice: its fields are reported once.
    ignored, notes = list(dict.fromkeys(top.ignored)), list(dict.fromkeys(top.notes))
    return ConvertedPipeline(spec, out, top.modules, ignored, notes)


@dataclass
class _Scope:
    """What a pipeline and the pipeline components it expands share."""

    root: Path  # the top pipeline's folder: module refs are relative to it
    prefix: str = ""  # 'train/' for the jobs of pipeline component job 'train'
    files: tuple[Path, ...] = ()  # the pipeline component files being expanded, outermost first
    modules: dict[str, tuple[Converted, Path]] = field(default_factory=dict)
    python: subdag.PythonCall | None = None


class _Pipeline:
    def __init__(
        self,
        src: yamlsource.Located,
        path: Path,
        image_map: Mapping[str, str],
        component_map: Mapping[str, Path],
        scope: _Scope,
    ) -> None:
        self.src, self.path, self.base, self.image_map = src, path, path.parent, image_map
        self.component_map = component_map
        self.scope, self.python = scope, scope.python
        self.data: dict[str, Any] = src.data
        self.problems: list[Problem] = []
        self.ignored: list[str] = []
        self.notes: list[str] = []
        self.modules = scope.modules
        # job -> its pipeline component (or parallel job's pair of jobs), expanded
        self.subs: dict[str, subdag.Expanded | None] = {}
        self.typing_components: Mapping[str, str | None] = {}

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> None:
        self.problems.append(self.src.problem(loc, message, key=key))

    def ignore(self, mapping: Mapping[str, Any], known: set[str], loc: Loc) -> None:
        self.ignored += [yamlsource.dotted((*loc, k)) for k in mapping if k not in known]

    def convert(self) -> dict[str, Any]:
        """Our pipeline data, its jobs named with the scope's prefix; problems collected."""
        d = self.data
        self.ignore(d, _PIPELINE_KEYS, ())
        raw_jobs = d.get("jobs")
        if not isinstance(raw_jobs, dict) or not raw_jobs:
            self.problem(("jobs",), "expected a mapping of jobs", key=True)
            raw_jobs = {}
        names = {j: self.scope.prefix + job_name(str(j)) for j in raw_jobs}
        renamed = [f"'{a}' is '{b}'" for a, b in names.items() if self.scope.prefix + a != b]
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
        # Inline jobs last: their ports are typed from the outputs of the jobs they read.
        components: dict[str, str | None] = {}
        self.typing_components = components
        for j, job in raw_jobs.items():
            if subdag.kind(job) == "pipeline":
                self.ignore(job, _JOB_KEYS, ("jobs", j))
                self.subs[str(j)] = subdag.load(self, str(j), job, names[j])
            elif not _inline(job) and not subdag.kind(job) == "parallel":
                components[str(j)] = self.component(str(j), job)
        for j, job in raw_jobs.items():
            if _inline(job):
                components[str(j)] = self.inline(str(j), job, components)
            elif subdag.kind(job) == "parallel":
                self.subs[str(j)] = amlparallel.load(self, str(j), job, names[j])
        for j, job in raw_jobs.items():
            if str(j) in self.subs:
                subdag.expand(self, str(j), job, names, components, out)
            elif isinstance(job, dict):
                out["jobs"][names[j]] = self.job(str(j), job, names, components, out)
        declared = d.get("outputs") or {}
        for o in declared if isinstance(declared, dict) else {}:
            if o not in out["outputs"]:
                self.notes.append(f"pipeline output '{o}' is bound by no job; nothing fills it")
        return out

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
            elif default is not None and found in ("file", "directory"):
                # Absolute, so the converted pipeline can be written anywhere.
                port["default"] = str((self.base / str(default)).resolve())
            elif default is not None:
                port["default"] = default
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
            self.problem((*loc, "type"), _unsupported(raw["type"]))
            return None
        comp = raw.get("component")
        if isinstance(comp, str) and comp.startswith("azureml:"):
            return self.registered(job, comp)
        try:
            if isinstance(comp, dict):
                ref = self.inline_ref(job)
                converted = convert_component(
                    self.src, (*loc, "component"), self.base, self.image_map, default_name=job
                )
                self._record(ref, converted, self.path, f"jobs.{job}.component")
                return ref
            if isinstance(comp, str):
                return self.component_file(self.base / comp, (*loc, "component"))
        except SpecError as exc:
            self.problems += exc.problems
            return None
        if comp is None:
            self.problem(
                loc,
                "expected 'component:' (a file or an inline component) or the job's own "
                "'command:' and 'environment:'",
            )
            return None
        self.problem(
            (*loc, "component"),
            f"expected a component file (./component.yml), an inline component or "
            f"azureml:NAME:VERSION, got '{comp}'",
        )
        return None

    def inline_ref(self, job: str) -> str:
        """The `module:` ref of a job's inline component: 'p.yml#jobs.train/fit'."""
        return f"{self.path.name}#jobs.{self.scope.prefix}{job}"

    def component_file(self, file: Path, loc: Loc) -> str | None:
        """The `module:` ref of a component file (its path from the top pipeline's folder),
        converted once however many jobs use it."""
        if not file.is_file():
            self.problem(loc, f"no component file at '{file}'")
            return None
        ref = os.path.relpath(file.resolve(), self.scope.root.resolve())
        if ref not in self.modules:
            self._record(ref, load_component(file, self.image_map), file, ref)
        return ref

    def registered(self, job: str, comp: str) -> str | None:
        """A registered component, read from the file the component map gives it."""
        loc: Loc = ("jobs", job, "component")
        file = self.mapped(comp, loc)
        if file is None:
            return None
        try:
            return self.component_file(file, loc)
        except SpecError as exc:
            self.problems += exc.problems
            return None

    def mapped(self, comp: str, loc: Loc) -> Path | None:
        """The file the component map gives a registered component; None: a problem."""
        try:
            return mapped_component(self.component_map, comp)
        except ValueError as exc:
            self.problem(loc, str(exc))
            return None

    def chain(self) -> list[Path]:
        """The pipeline component files expanded to reach this one, outermost first, and it."""
        return [*self.scope.files, self.path.resolve()]

    def child(self, src: yamlsource.Located, file: Path, prefix: str) -> _Pipeline:
        """The converter of a pipeline component this pipeline uses, its jobs as 'prefix...'."""
        scope = _Scope(self.scope.root, prefix, tuple(self.chain()), self.modules, self.python)
        return _Pipeline(src, file, self.image_map, self.component_map, scope)

    def output_port(self, job: str, output: str, components: Mapping[str, str | None]) -> Any:
        """The OutputPort of `job`'s `output` (through a pipeline component to its job),
        or None when it is not known yet (an inline job) or does not exist."""
        sub = self.subs.get(job)
        if sub is not None:
            ref = placeholders.whole(str(sub.data["outputs"].get(output, "")))
            spec = sub.data["jobs"].get(ref.name) if ref else None
            module = self.modules.get(spec["module"]) if spec else None
            return module[0].spec.outputs.get(ref.output) if module and ref else None
        ref_ = components.get(job)
        return self.modules[ref_][0].spec.outputs.get(output) if ref_ else None

    def inline(
        self, job: str, raw: dict[str, Any], components: Mapping[str, str | None]
    ) -> str | None:
        """A command job with its own command: an inline component typed from its bindings."""
        loc: Loc = ("jobs", job)
        if raw.get("type", "command") != "command":
            self.problem((*loc, "type"), _unsupported(raw["type"]))
            return None
        self.ignore(raw, _JOB_KEYS | _INLINE_KEYS, loc)
        comp: dict[str, Any] = {"type": "command", "name": job}
        comp |= {k: raw[k] for k in _INLINE_KEYS - {"name", "display_name"} if k in raw}
        inputs = raw.get("inputs") or {}
        outputs = raw.get("outputs") or {}
        if not isinstance(inputs, dict) or not isinstance(outputs, dict):
            self.problem(loc, "expected 'inputs' and 'outputs' to be mappings")
            return None
        comp["inputs"] = {n: self.inline_input(v, components) for n, v in inputs.items()}
        comp["outputs"] = {n: self.inline_output(v) for n, v in outputs.items()}
        src = self.located_as(job, comp)
        ref = self.inline_ref(job)
        try:
            converted = convert_component(src, loc, self.base, self.image_map, default_name=job)
        except SpecError as exc:
            self.problems += exc.problems
            return None
        self._record(ref, converted, self.path, f"jobs.{job}")
        return ref

    def inline_output(self, value: Any) -> dict[str, Any]:
        """The port an inline job's output stands for: its type, or the type of the
        pipeline output it is bound to."""
        if isinstance(value, dict):
            return {"type": value.get("type", "uri_folder")}
        m = _PARENT.fullmatch(value.strip()) if isinstance(value, str) else None
        declared = self.data.get("outputs")
        port = declared.get(m.group(2)) if m and isinstance(declared, dict) else None
        return {"type": port.get("type", "uri_folder")} if isinstance(port, dict) else {}

    def inline_input(self, value: Any, components: Mapping[str, str | None]) -> dict[str, Any]:
        """The port an inline job's input stands for, typed from what is bound to it."""
        if isinstance(value, dict):
            return {"type": value.get("type", "uri_folder")}
        if isinstance(value, bool | int | float):
            return {"type": {bool: "boolean", int: "integer"}.get(type(value), "number")}
        m = _PARENT.fullmatch(value.strip()) if isinstance(value, str) else None
        if m is None:
            return {"type": "string"}
        kind, rest = m.group(1), m.group(2)
        declared = self.data.get("inputs") or {}
        if kind == "inputs" and isinstance(declared, dict) and rest in declared:
            port = declared[rest]
            if not isinstance(port, dict):
                return self.inline_input(port, components)
            out = {"type": port.get("type", "uri_folder")}
            return out | ({"optional": True} if port.get("optional") else {})
        jm = _JOB_REF.fullmatch(rest) if kind == "jobs" else None
        if jm is None:
            return {"type": "string"}
        port = self.output_port(jm.group(1), jm.group(2), components)
        if port is None:  # another inline job's output, or a dangling one (located later)
            other = (self.data.get("jobs") or {}).get(jm.group(1))
            raw = other.get("outputs") if isinstance(other, dict) else None
            declared_out = raw.get(jm.group(2)) if isinstance(raw, dict) else None
            written = declared_out.get("type") if isinstance(declared_out, dict) else None
            return {"type": written or "uri_folder"}
        return {"type": _OUR_TYPES.get(port.type, "uri_folder")}

    def located_as(self, job: str, raw: dict[str, Any]) -> yamlsource.Located:
        """This file's positions, with job `job` read as `raw` (the component it stands for)."""
        data = {**self.data, "jobs": {**self.data["jobs"], job: raw}}
        return yamlsource.Located(self.src.path, data, self.src.values, self.src.keys)

    def record(self, ref: str, converted: Converted, job: str) -> None:
        """A module made from job `job` of this file."""
        self._record(ref, converted, self.path, f"jobs.{job}")

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
                self.ignore(value, {"type", "path", "mode"}, loc)
                value = value.get("path")
            if value is None or subdag.remote(self, value, loc):
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
            elif not _inline(raw):  # an inline job's outputs are its own declarations
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

        declared = self.data.get("inputs")
        declared = declared if isinstance(declared, dict) else {}

        def replace(m: re.Match[str]) -> str:
            kind, rest = m.group(1), m.group(2)
            if kind == "inputs" and rest not in declared:
                near = subdag.nearest(rest, [str(k) for k in declared])
                hint = f"did you mean '{near}'?" if near else f"inputs: {', '.join(declared)}"
                self.problem(loc, f"'{m.group(0)}' names no input of this pipeline; {hint}")
            if kind != "jobs":
                return f"${{{{{kind}.{rest}}}}}"
            jm = _JOB_REF.fullmatch(rest)
            if jm is None:
                self.problem(loc, f"'{m.group(0)}': expected parent.jobs.JOB.outputs.NAME")
                return m.group(0)
            job, output = jm.group(1), jm.group(2)
            sub = self.subs.get(job)
            if sub is not None:
                if output in sub.data["outputs"]:
                    return str(sub.data["outputs"][output])
                known = ", ".join(sub.data["outputs"]) or "none"
                self.problem(loc, f"'{m.group(0)}': job '{job}' has no output '{output}' ({known})")
                return m.group(0)
            if job not in names:
                near = subdag.nearest(job, [n for n in names if n != loc[1]])
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


def _unsupported(kind: Any) -> str:
    """The refusal of a job type that does not run here."""
    return (
        f"'{kind}' jobs do not run here; containerexec runs command, pipeline (a pipeline "
        "component) and parallel jobs"
    )


def _inline(job: Any) -> bool:
    """A command job with its own command and no component."""
    return isinstance(job, dict) and "component" not in job and "command" in job
