"""An Azure ML pipeline component expanded into the pipeline that uses it: a sub-DAG.

    jobs:
      twice_a: {type: pipeline, component: ./train_eval.yml,
                inputs: {data: "${{parent.inputs.a}}", lr: 0.1},
                outputs: {report: "${{parent.outputs.report_a}}"}}

The component's jobs become jobs 'twice_a/train', 'twice_a/eval' of the pipeline (a
second use, 'twice_b/...', is a second sub-DAG with its own runs, records and cache
keys). Their `${{inputs.X}}` (the component's inputs, written `${{parent.inputs.X}}`
inside it) are replaced here by what the using job binds to X, its default, or nothing
when X is optional and unbound; the component's outputs are the job outputs its jobs
bind to `${{parent.outputs.Y}}`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from containerexec.errors import PipelineError, Problem, SpecError
from containerexec.formats.azureml import Converted, read_mapping
from containerexec.model import placeholders, yamlsource

Loc = yamlsource.Loc
Names = Mapping[str, str]  # an Azure ML job name -> ours
Refs = Mapping[str, str | None]  # a job -> the `module:` ref of its component
REMOTE = ("azureml:", "http:", "https:", "wasbs:", "abfss:", "adl:")
PARENT = re.compile(r"\$\{\{\s*(?:parent\.)?(inputs|outputs|jobs)\.([^}\s]*?)\s*\}\}")

SCHEMA = "pipelineComponent.schema.json"
# (source, file name, function, argument types) -> the command head and environment that
# call the function through authoring/'s Python entry; cli/ passes authoring/functions.py
# function_call in, as formats/ may not import authoring/.
PythonCall = Callable[[str, str, str, Mapping[str, str]], tuple[list[str], dict[str, str]]]


def kind(job: Any) -> str | None:
    """'pipeline' for a job that calls a pipeline component, 'parallel' for a parallel job
    (amlparallel.py): the jobs that expand into sub-DAGs; None for the others."""
    written = job.get("type") if isinstance(job, dict) else None
    return written if written in ("pipeline", "parallel") else None


def is_pipeline_component(data: Any) -> bool:
    """`$schema: .../pipelineComponent.schema.json`, or `type: pipeline` with `jobs:`."""
    if not isinstance(data, dict):
        return False
    return str(data.get("$schema", "")).endswith(SCHEMA) or (
        data.get("type") == "pipeline" and isinstance(data.get("jobs"), dict)
    )


@dataclass
class Expanded:
    """A pipeline component converted with its jobs' names prefixed ('job/...')."""

    path: Path
    src: yamlsource.Located
    data: dict[str, Any]  # our pipeline data: inputs, outputs (job output refs), jobs
    ignored: list[str] = field(default_factory=list)


class Owner(Protocol):
    """What expanding a job needs of the pipeline converter it is a job of (amlpipeline.py)."""

    path: Path
    base: Path
    src: yamlsource.Located
    image_map: Mapping[str, str]
    python: PythonCall | None  # needed by parallel jobs (amlparallel.py)
    problems: list[Problem]
    ignored: list[str]
    notes: list[str]
    subs: dict[str, Expanded | None]
    typing_components: Mapping[str, str | None]

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> None: ...
    def ignore(self, mapping: Mapping[str, Any], known: set[str], loc: Loc) -> None: ...
    def chain(self) -> list[Path]: ...
    def child(self, src: yamlsource.Located, file: Path, prefix: str) -> Converter: ...
    def mapped(self, comp: str, loc: Loc) -> Path | None: ...
    def reference(self, value: Any, loc: Loc, names: Names, components: Refs) -> Any: ...
    def inline_input(self, value: Any, components: Mapping[str, str | None]) -> dict[str, Any]: ...
    def inline_output(self, value: Any) -> dict[str, Any]: ...
    def inline_ref(self, job: str) -> str: ...
    def located_as(self, job: str, raw: dict[str, Any]) -> yamlsource.Located: ...
    def record(self, ref: str, converted: Converted, job: str) -> None: ...


class Converter(Owner, Protocol):
    """A pipeline component's converter: its data, problems gathered, nothing raised."""

    def convert(self) -> dict[str, Any]: ...


class Unbindable(ValueError):
    """A binding that cannot reach the component's job: names the component input."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def load(p: Owner, job: str, raw: dict[str, Any], name: str) -> Expanded | None:
    """A `type: pipeline` job's pipeline component, converted with its jobs as 'name/...';
    None when it cannot be (a problem of `p`, located at its `component:`)."""
    loc: Loc = ("jobs", job, "component")
    comp = raw.get("component")
    if not isinstance(comp, str):
        p.problem(loc, "expected a pipeline component file (./component.yml)", key=True)
        return None
    file = p.mapped(comp, loc) if comp.startswith("azureml:") else p.base / comp
    if file is None:
        return None
    file = file.resolve()
    if not file.is_file():
        p.problem(loc, f"no pipeline component file at '{file}'")
        return None
    chain = p.chain()
    if file in chain:
        cycle = " -> ".join(f.name for f in [*chain[chain.index(file) :], file])
        p.problem(loc, f"cycle: {cycle}; a pipeline component cannot include itself")
        return None
    try:
        src = read_mapping(file, PipelineError)
    except SpecError as exc:
        p.problems += exc.problems
        return None
    if not is_pipeline_component(src.data):
        p.problem(
            loc,
            f"'{comp}' is not a pipeline component ($schema ending {SCHEMA}, or "
            "type: pipeline with jobs:); a command component is a job of type: command",
        )
        return None
    sub = p.child(src, file, f"{name}/")
    data = sub.convert()
    p.problems += sub.problems
    p.ignored += [f"{file.name}: {i}" for i in sub.ignored]
    p.notes += [f"{file.name}: {n}" for n in sub.notes]
    return Expanded(file, src, data)


def expand(
    p: Owner,
    job: str,
    raw: dict[str, Any],
    names: Mapping[str, str],
    components: Mapping[str, str | None],
    out: dict[str, Any],
) -> None:
    """A pipeline component's jobs, with what this job binds, into `out`."""
    sub = p.subs[job]
    if sub is None:
        return
    where = f"pipeline component '{sub.path.name}'"
    declared: dict[str, Any] = sub.data["inputs"]
    bindings: dict[str, Any] = {}
    for name, value in (raw.get("inputs") or {}).items():
        loc: Loc = ("jobs", job, "inputs", name)
        if name not in declared:
            hint = nearest(name, list(declared)) or ", ".join(declared) or "none"
            p.problem(loc, f"{where} has no input '{name}' ({hint})", key=True)
            continue
        if isinstance(value, dict):
            p.ignore(value, {"type", "path", "mode"}, loc)
            value = value.get("path")
        if value is None or remote(p, value, loc):
            continue
        if declared[name]["type"] in ("file", "directory") and "${{" not in str(value):
            value = str((p.base / str(value)).resolve())
        bindings[name] = p.reference(value, loc, names, components)
    for name, port in declared.items():
        if name not in bindings and "default" not in port and not port.get("optional"):
            p.problem(
                ("jobs", job, "inputs"),
                f"input '{name}' of {where} is required; bind it under jobs.{job}.inputs",
                key=True,
            )
    for sub_job, spec in sub.data["jobs"].items():
        inputs = {}
        for in_name, value in spec["inputs"].items():
            try:
                bound = bind(value, bindings, declared)
            except Unbindable as exc:
                p.problem(("jobs", job, "inputs", exc.name), str(exc))
                continue
            if bound is not DROP:
                inputs[in_name] = bound
        out["jobs"][sub_job] = {**spec, "inputs": inputs}
    for name, value in (raw.get("outputs") or {}).items():
        loc = ("jobs", job, "outputs", name)
        if name not in sub.data["outputs"]:
            known = ", ".join(sub.data["outputs"]) or "none"
            p.problem(loc, f"{where} has no output '{name}' ({known})", key=True)
            continue
        m = PARENT.fullmatch(value.strip()) if isinstance(value, str) else None
        if m and m.group(1) == "outputs":
            out["outputs"][m.group(2)] = sub.data["outputs"][name]
        elif isinstance(value, dict):  # its type is the component's; a mode means nothing here
            p.ignore(value, {"type"}, loc)


def remote(p: Owner, value: Any, loc: Loc) -> bool:
    """A data asset by name or a cloud URI, which is refused (True) where it is bound."""
    if not isinstance(value, str) or not value.startswith(REMOTE):
        return False
    name = loc[-1]
    p.problem(
        loc,
        f"'{value}' is data in Azure ML or the cloud, which a local run cannot read; "
        f"bind the input to a pipeline input, ${{{{parent.inputs.{name}}}}}, and give "
        f"it a local path: -i {name}=PATH",
    )
    return True


DROP = object()  # the job input is left unbound: an optional component input nobody set


def bind(value: Any, bindings: Mapping[str, Any], declared: Mapping[str, Any]) -> Any:
    """A component job's input (our grammar) with the component's inputs replaced.

    Args:
        bindings: component input -> what the using job binds (our grammar, or a literal).
        declared: the component's inputs as converted (type, default, optional).
    Returns:
        The value, or DROP when it names an optional input that nobody set.
    """
    if not isinstance(value, str) or "${{" not in value:
        return value
    ref = placeholders.whole(value)
    if ref is not None:
        if ref.kind != "inputs":
            return value  # another job of the component: its name is prefixed already
        return _value(ref.name, bindings, declared)
    out, at = [], 0
    for found in placeholders.find(value):
        out.append(value[at : found.start])
        at = found.end
        if found.ref is None or found.ref.kind != "inputs":
            out.append(value[found.start : found.end])
            continue
        name = found.ref.name
        got = _value(name, bindings, declared)
        if got is DROP:
            return DROP  # as a string with an unset optional input is, at the top
        whole = placeholders.whole(got) if isinstance(got, str) else None
        if whole is not None and whole.kind == "jobs":
            raise Unbindable(
                name,
                f"'{value}' in the component uses input '{name}' inside a string, and "
                f"'{got}' is a job output, which must be a whole value",
            )
        out.append(placeholders.as_text(got))
    return "".join([*out, value[at:]])


def _value(name: str, bindings: Mapping[str, Any], declared: Mapping[str, Any]) -> Any:
    if name in bindings:
        return bindings[name]
    port = declared.get(name)
    if isinstance(port, dict) and "default" in port:
        return port["default"]
    return DROP


def nearest(name: str, known: list[str]) -> str | None:
    """The name meant: same letters and digits ('componentA' -> 'component_a'), else close."""

    def bare(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    same = [k for k in known if bare(k) == bare(name)]
    near = same or difflib.get_close_matches(name, known, n=1, cutoff=0.3)
    return near[0] if near else None
