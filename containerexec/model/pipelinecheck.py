"""Loading, checking and planning a pipeline: every problem found at once and located in
its file (or by key path for a pipeline built in code); the graph checked before the
modules are loaded, the modules through a ModuleLoader, so no engine is needed unless a
job names an image that carries its spec.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from containerexec.errors import ContainerExecError, PipelineError, Problem, SpecError
from containerexec.model import yamlsource
from containerexec.model.pipeline import (
    ModuleLoader,
    PipelineSpec,
    Plan,
    PlannedJob,
    Source,
    compatible,
    input_refs,
    parse_value,
)
from containerexec.model.spec import InputPort, ModuleSpec, check_value, load_spec


def is_spec_path(ref: str, spec_dir: Path) -> bool:
    """True when a job's `module:` names a spec file rather than an image."""
    return ref.endswith((".yaml", ".yml")) or (spec_dir / ref).is_file()


def file_loader(spec_dir: Path) -> ModuleLoader:
    """The default loader: spec paths relative to the pipeline file; no image references."""

    def load(ref: str) -> tuple[ModuleSpec, Path | None]:
        if not is_spec_path(ref, spec_dir):
            raise ContainerExecError(
                f"'{ref}' is neither a spec file here nor loadable without "
                "an engine; name a .yaml spec or run with an engine"
            )
        return load_spec(spec_dir / ref), spec_dir / ref

    return load


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Load a pipeline file; raise PipelineError with every problem that needs no module spec."""
    spec, _src, problems = _parse(Path(path))
    if problems:
        raise PipelineError(str(path), problems)
    assert spec is not None
    return spec


def check_pipeline(path: str | Path, *, load_module: ModuleLoader | None = None) -> Plan:
    """Load a pipeline file and its modules and check all of it; raise every problem at once."""
    path = Path(path)
    spec, src, problems = _parse(path)
    data = src.data if src is not None and isinstance(src.data, dict) else {}
    checker = _Checker(str(path), path.parent, src, load_module or file_loader(path.parent))
    jobs, outputs = checker.modules(data)
    problems = sorted([*problems, *checker.problems], key=lambda p: (p.line, p.col))
    if problems:
        raise PipelineError(str(path), _unique(problems))
    assert spec is not None
    return _build_plan(spec, str(path), path.parent, jobs, outputs)


def plan(
    pipeline: PipelineSpec,
    spec_dir: Path,
    *,
    load_module: ModuleLoader | None = None,
    path: str | None = None,
) -> Plan:
    """Check a pipeline built in code (no file positions in messages) and load its modules."""
    where = path or f"pipeline '{pipeline.name}'"
    data = pipeline.model_dump(mode="python")
    checker = _Checker(where, spec_dir, None, load_module or file_loader(spec_dir))
    checker.graph(data)
    jobs, outputs = checker.modules(data)
    if checker.problems:
        raise PipelineError(where, _unique(checker.problems))
    return _build_plan(pipeline, where, spec_dir, jobs, outputs)


def _build_plan(
    spec: PipelineSpec,
    path: str,
    spec_dir: Path,
    jobs: dict[str, PlannedJob],
    outputs: dict[str, Source],
) -> Plan:
    ts = graphlib.TopologicalSorter({n: jobs[n].needs for n in spec.jobs})
    return Plan(spec, path, spec_dir, jobs, outputs, order=list(ts.static_order()))


def _parse(path: Path) -> tuple[PipelineSpec | None, yamlsource.Located | None, list[Problem]]:
    try:
        text = path.read_text()
    except OSError as exc:
        problem = Problem(str(path), 0, 0, "", exc.strerror or str(exc))
        raise PipelineError(str(path), [problem]) from None
    src = yamlsource.parse(text, str(path))
    problems = list(src.problems)
    if src.data is None:
        if not problems:
            problems.append(
                Problem(
                    str(path),
                    1,
                    1,
                    "",
                    "expected a pipeline (a mapping with name and jobs), found nothing",
                )
            )
        return None, src, problems
    if not isinstance(src.data, dict):
        return None, src, [*problems, src.problem((), "expected a mapping of pipeline fields")]
    spec, found = _validated(src, path.parent)
    return spec, src, problems + found


def validate_pipeline(data: Mapping[str, Any], spec_dir: Path, path: str) -> PipelineSpec:
    """Validate pipeline data built in code with load_pipeline's checks; `path` names it.

    There is no file, so problems carry no line and column, only the key path.
    """
    spec, problems = _validated(yamlsource.Located(path, dict(data)), spec_dir)
    if problems:
        raise PipelineError(path, [replace(p, line=0, col=0) for p in _unique(problems)])
    assert spec is not None
    return spec


def _validated(
    src: yamlsource.Located, spec_dir: Path
) -> tuple[PipelineSpec | None, list[Problem]]:
    """The schema and the graph checked together, so one error lists all problems."""
    spec, problems = None, []
    try:
        spec = PipelineSpec.model_validate(src.data)
    except ValidationError as exc:
        problems = yamlsource.pydantic_problems(exc, src, PipelineSpec)
    checker = _Checker(src.path, spec_dir, src, file_loader(spec_dir))
    checker.graph(src.data)
    return spec, problems + checker.problems


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _near(name: str, known: list[str], what: str) -> str:
    near = difflib.get_close_matches(name, known, n=1)
    if near:
        return f"did you mean '{near[0]}'?"
    return f"{what}: {', '.join(sorted(known)) or 'none'}"


class _Checker:
    """Collects every problem of a pipeline, located in its file when there is one."""

    def __init__(
        self, path: str, spec_dir: Path, src: yamlsource.Located | None, load_module: ModuleLoader
    ) -> None:
        self.path = path
        self.spec_dir = spec_dir
        self.src = src
        self.load_module = load_module
        self.problems: list[Problem] = []

    def add(self, loc: yamlsource.Loc, message: str, *, key: bool = False) -> None:
        if self.src is not None:
            self.problems.append(self.src.problem(loc, message, key=key))
        else:
            self.problems.append(Problem(self.path, 0, 0, yamlsource.dotted(loc), message))

    def graph(self, data: Mapping[str, Any]) -> None:
        """References to unknown jobs or inputs, malformed placeholders, cycles."""
        jobs = _mapping(data.get("jobs"))
        declared = list(_mapping(data.get("inputs")))
        needs: dict[str, set[str]] = {name: set() for name in jobs}
        for name in jobs:
            # 'a/b' keeps its outputs in jobs/a/b/: a job 'a' would share that folder.
            outer = [p for p in _outers(name) if p in jobs]
            if outer:
                self.add(
                    ("jobs", name),
                    f"job '{name}' is inside '{outer[0]}', which is a job itself; rename one",
                    key=True,
                )
        for name, job in jobs.items():
            for in_name, value in _mapping(_mapping(job).get("inputs")).items():
                loc = ("jobs", name, "inputs", in_name)
                try:
                    source = parse_value(value)
                except ValueError as exc:
                    self.add(loc, str(exc))
                    continue
                refs = (
                    [source]
                    if source.kind in ("input", "job")
                    else [Source("input", name=n) for n in input_refs(value)]
                )
                for ref in refs:
                    if ref.kind == "input" and ref.name not in declared:
                        self.add(
                            loc,
                            f"'${{{{{ref.ref()}}}}}' names no pipeline input; "
                            + _near(ref.name, declared, "inputs"),
                        )
                    elif ref.kind == "job" and ref.name == name:
                        self.add(
                            loc,
                            f"job '{name}' takes its own output '{ref.output}'; "
                            f"a job cannot feed itself ({name} -> {name})",
                        )
                    elif ref.kind == "job" and ref.name not in jobs:
                        self.add(
                            loc,
                            f"'${{{{{ref.ref()}}}}}' names no job; "
                            + _near(ref.name, list(jobs), "jobs"),
                        )
                    elif ref.kind == "job":
                        needs[name].add(ref.name)
        for out_name, value in _mapping(data.get("outputs")).items():
            out_loc = ("outputs", out_name)
            try:
                source = parse_value(value)
            except ValueError as exc:
                self.add(out_loc, str(exc))
                continue
            if source.kind != "job":
                self.add(
                    out_loc,
                    f"a pipeline output takes a job output: write "
                    f"'${{{{jobs.JOB.outputs.NAME}}}}', got {value!r}",
                )
            elif source.name not in jobs:
                self.add(
                    out_loc,
                    f"'${{{{{source.ref()}}}}}' names no job; "
                    + _near(source.name, list(jobs), "jobs"),
                )
        self._cycles(needs)

    def _cycles(self, needs: dict[str, set[str]]) -> None:
        try:
            graphlib.TopologicalSorter(needs).prepare()
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])  # in the direction data flows: a -> b means b takes a's
            self.add(
                ("jobs", cycle[0]),
                f"cycle: {' -> '.join(cycle)}; a job cannot depend, "
                "even indirectly, on its own outputs",
                key=True,
            )

    def modules(self, data: Mapping[str, Any]) -> tuple[dict[str, PlannedJob], dict[str, Source]]:
        """Load each job's module; check bound inputs, required inputs and types."""
        jobs_data = _mapping(data.get("jobs"))
        loaded: dict[str, tuple[ModuleSpec, Path | None]] = {}
        for name, job in jobs_data.items():
            ref = _mapping(job).get("module")
            if isinstance(ref, str) and ref:
                got = self._load(name, ref)
                if got is not None:
                    loaded[name] = got
        ports: dict[str, InputPort] = {}
        for n, p in _mapping(data.get("inputs")).items():
            try:  # the declarations pydantic accepts; the others are reported already
                ports[n] = InputPort.model_validate(p)
            except ValidationError:
                pass
        planned: dict[str, PlannedJob] = {}
        for name, (module, module_path) in loaded.items():
            sources = self._job_inputs(name, _mapping(jobs_data[name]), module, loaded, ports)
            needs = tuple(sorted({s.name for s in sources.values() if s.kind == "job"}))
            planned[name] = PlannedJob(name, module, module_path, sources, needs)
        outputs: dict[str, Source] = {}
        for out_name, value in _mapping(data.get("outputs")).items():
            try:
                source = parse_value(value)
            except ValueError:
                continue  # reported by graph()
            if source.kind == "job" and source.name in loaded:
                module = loaded[source.name][0]
                if source.output not in module.outputs:
                    self.add(("outputs", out_name), self._no_output(source, module))
                else:
                    outputs[out_name] = source
        return planned, outputs

    def _load(self, job: str, ref: str) -> tuple[ModuleSpec, Path | None] | None:
        loc = ("jobs", job, "module")
        try:
            return self.load_module(ref)
        except SpecError as exc:
            self.add(
                loc,
                f"module '{ref}' is invalid ({len(exc.problems)} problem"
                f"{'s' if len(exc.problems) != 1 else ''}, listed with its own file)",
            )
            self.problems.extend(exc.problems)
        except ContainerExecError as exc:
            self.add(loc, f"module '{ref}': {exc}")
        return None

    def _no_output(self, source: Source, module: ModuleSpec) -> str:
        return (
            f"job '{source.name}' (module '{module.name}') has no output '{source.output}'; "
            + _near(source.output, list(module.outputs), "outputs")
        )

    def _job_inputs(
        self,
        name: str,
        job: Mapping[str, Any],
        module: ModuleSpec,
        loaded: Mapping[str, tuple[ModuleSpec, Path | None]],
        ports: Mapping[str, InputPort],
    ) -> dict[str, Source]:
        sources: dict[str, Source] = {}
        bound = _mapping(job.get("inputs"))
        where = f"module '{module.name}'"
        for in_name, value in bound.items():
            loc = ("jobs", name, "inputs", in_name)
            port = module.inputs.get(in_name)
            if port is None:
                self.add(
                    loc,
                    f"{where} has no input '{in_name}'; "
                    + _near(in_name, list(module.inputs), "inputs"),
                    key=True,
                )
                continue
            try:
                source = parse_value(value)
            except ValueError:
                continue  # reported by graph()
            problem = self._type_problem(source, port.type, in_name, where, loaded, ports)
            if problem:
                self.add(loc, problem)
            else:
                sources[in_name] = source
        for in_name, port in module.inputs.items():
            if in_name not in bound and port.default is None and not port.optional:
                self.add(
                    ("jobs", name, "inputs"),
                    f"input '{in_name}' ({port.type}) of {where} "
                    f"is required; bind it under jobs.{name}.inputs",
                    key=True,
                )
        return sources

    def _type_problem(
        self,
        source: Source,
        wanted: str,
        in_name: str,
        where: str,
        loaded: Mapping[str, tuple[ModuleSpec, Path | None]],
        ports: Mapping[str, InputPort],
    ) -> str | None:
        takes = f"input '{in_name}' of {where} takes {_a(wanted)}"
        if source.kind == "literal":
            try:
                check_value(wanted, source.value)
            except ValueError as exc:
                return f"{takes}: {exc}"
            if wanted in ("file", "directory"):
                target = self.spec_dir / str(source.value)
                ok = target.is_file() if wanted == "file" else target.is_dir()
                if not ok:
                    return (
                        f"{takes}, but '{source.value}' (relative to the pipeline file) is "
                        "not one; fix the path"
                    )
            return None
        if source.kind == "template":
            return None if wanted == "string" else f"{takes}, not text with placeholders"
        if source.kind == "input":
            port = ports.get(source.name)
            if port is not None and not compatible(port.type, wanted):
                return f"type mismatch: pipeline input '{source.name}' is {_a(port.type)}; {takes}"
            return None
        upstream = loaded.get(source.name)
        if upstream is None:
            return None  # unknown or broken job: reported elsewhere
        out = upstream[0].outputs.get(source.output)
        if out is None:
            return self._no_output(source, upstream[0])
        if not compatible(out.type, wanted):
            return f"type mismatch: {source.ref()} is {_a(out.type)}; {takes}"
        return None


def _outers(job: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b']: the pipeline components a job is inside."""
    parts = job.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _a(type_: str) -> str:
    return f"an {type_}" if type_[0] in "aeiou" else f"a {type_}"


def _mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return {}
