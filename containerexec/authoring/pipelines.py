"""Pipelines written in Python: @pipeline wires module calls into a PipelineSpec.

    wordcount = from_yaml("wordcount.yaml")

    @pipeline(name="stats")
    def stats(corpus: InputDir, min_count: int = 1) -> dict[str, Any]:
        counts = wordcount(corpus=corpus, min_count=min_count)   # a job; returns a handle
        top = topwords(counts=counts.outputs.counts)
        return {"report": top.outputs.report}

    stats.spec          # the PipelineSpec;  stats.to_yaml()
    stats.run(corpus="data", report="report.tsv")   # every job in local containers

The function runs once, where the pipeline is driven, with stand-ins for its
inputs: it only records jobs and links, which the orchestrator then runs.
"""

from __future__ import annotations

import argparse
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from containerexec.authoring import functions as pyfunc
from containerexec.authoring.modules import ContainerModule, Module
from containerexec.engine.base import Engine
from containerexec.engine.docker import DockerEngine
from containerexec.errors import ContainerExecError, RunError, UsageError
from containerexec.model import pipeline as pipelines
from containerexec.model.bindings import parse_pairs
from containerexec.model.pipeline import ModuleLoader, PipelineSpec, Plan
from containerexec.run.orchestrator import PipelineResult, run_pipeline
from containerexec.store.tree import RunStore

_state = threading.local()
RESERVED = (
    "runs_dir",
    "engine",
    "max_workers",
    "max_containers",
    "keep_going",
    "cache",
    "labels",
    "check",
)


@dataclass(frozen=True)
class InputRef:
    """A pipeline input, as seen by the function that wires the pipeline."""

    name: str

    def __str__(self) -> str:
        return f"${{{{inputs.{self.name}}}}}"


@dataclass(frozen=True)
class OutputRef:
    """One output of a job, to pass to another job or return as a pipeline output."""

    job: str
    output: str

    def __str__(self) -> str:
        return f"${{{{jobs.{self.job}.outputs.{self.output}}}}}"


class Outputs:
    """`job.outputs.NAME` or `job.outputs["NAME"]`; unknown names fail at once."""

    def __init__(self, job: str, module: Module) -> None:
        self._job, self._module = job, module

    def __getattr__(self, name: str) -> OutputRef:
        return self[name]

    def __getitem__(self, name: str) -> OutputRef:
        known = self._module.spec.outputs
        if name not in known:
            raise UsageError(
                f"job '{self._job}' (module '{self._module.name}') has no output "
                f"'{name}'; outputs: {', '.join(sorted(known)) or 'none'}"
            )
        return OutputRef(self._job, name)


@dataclass(frozen=True)
class Job:
    """What calling a module inside a @pipeline function returns."""

    name: str
    module: Module

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.name, self.module)


@dataclass
class _Builder:
    base: Path
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)


def building() -> bool:
    """True while a @pipeline function is being traced."""
    return getattr(_state, "builder", None) is not None


def add_job(module: Module, name: str | None, inputs: Mapping[str, Any]) -> Job:
    """Record one job of the pipeline being traced."""
    builder: _Builder | None = getattr(_state, "builder", None)
    if builder is None:
        raise UsageError(f"module '{module.name}': .job() works only inside a @pipeline function")
    if name is None:
        stem = module.name.replace("-", "_").replace(".", "_")
        stem = stem if stem.isidentifier() else f"job_{stem}"
        name, n = stem, 2
        while name in builder.jobs:
            name, n = f"{stem}_{n}", n + 1
    elif name in builder.jobs:
        raise UsageError(f"two jobs are named '{name}'; give each job its own name")
    values = {k: _value(v, f"job '{name}' input '{k}'") for k, v in inputs.items()}
    builder.jobs[name] = {"module": _module_ref(builder, module), "inputs": values}
    return Job(name, module)


def _value(value: Any, where: str) -> Any:
    if isinstance(value, Job):
        outs = list(value.module.spec.outputs)
        if len(outs) != 1:
            raise UsageError(
                f"{where}: job '{value.name}' has {len(outs)} outputs; pass one "
                f"of them: {value.name}.outputs.NAME"
            )
        return str(OutputRef(value.name, outs[0]))
    if isinstance(value, InputRef | OutputRef):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    raise UsageError(
        f"{where}: {type(value).__name__} is not a pipeline value; pass a literal, "
        "a pipeline input or another job's output"
    )


def _module_ref(builder: _Builder, module: Module) -> str:
    """How the pipeline names a module: a spec path from `base`, or `NAME.yaml` for Python."""
    for ref, known in builder.modules.items():
        if known is module:
            return ref
    if _is_yaml(module.spec_path):
        assert module.spec_path is not None
        ref = Path(os.path.relpath(module.spec_path, builder.base)).as_posix()
    else:
        ref, n = f"{module.name}.yaml", 2
        while ref in builder.modules:
            ref, n = f"{module.name}-{n}.yaml", n + 1
    builder.modules[ref] = module
    return ref


def _is_yaml(path: Path | None) -> bool:
    return path is not None and path.suffix in (".yaml", ".yml")


class Pipeline:
    """A PipelineSpec plus its modules; made from YAML or a @pipeline function."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        base: Path,
        modules: Mapping[str, Module],
        path: Path | None = None,
    ) -> None:
        """`base` is the folder module paths and literal paths are relative to."""
        self.spec = spec
        self.base = base
        self.modules = dict(modules)
        self.path = path

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        path = Path(path).resolve()
        return cls(pipelines.load_pipeline(path), base=path.parent, modules={}, path=path)

    @classmethod
    def from_func(cls, fn: Callable[..., Any], **settings: Any) -> Pipeline:
        """Trace `fn` (settings as for @pipeline) into a Pipeline."""
        if isinstance(fn, Pipeline):
            return fn
        made: Pipeline = pipeline(**settings)(fn)
        return made

    def loader(self) -> ModuleLoader:
        """Modules written in Python first, then spec files next to the pipeline."""
        files = pipelines.file_loader(self.base)

        def load(ref: str) -> tuple[Any, Path | None]:
            if ref in self.modules:
                return self.modules[ref].spec, self.modules[ref].spec_path
            return files(ref)

        return load

    def plan(self) -> Plan:
        """Check the whole pipeline with its modules; PipelineError lists every problem."""
        if self.path is not None and not self.modules:
            return pipelines.check_pipeline(self.path)
        return pipelines.plan(self.spec, self.base, load_module=self.loader())

    def to_yaml(self) -> str:
        data = self.spec.model_dump(mode="json", exclude_defaults=True)
        return pyfunc.dump_yaml(data)

    def write(self, path: str | Path) -> Path:
        """The pipeline YAML, plus the spec of each Python module beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        python = {ref for ref, m in self.modules.items() if not _is_yaml(m.spec_path)}
        for ref in python:
            self.modules[ref].write(path.parent / ref)
        spec = self.spec
        if path.parent.resolve() != self.base.resolve():
            spec = _rebased(spec, self.base, path.parent, python)
        path.write_text(pyfunc.dump_yaml(spec.model_dump(mode="json", exclude_defaults=True)))
        return path

    def run(
        self,
        *,
        runs_dir: str | Path = ".containerexec",
        engine: Engine | None = None,
        max_workers: int = 4,
        max_containers: int | None = None,
        keep_going: bool = False,
        cache: bool = True,
        labels: Mapping[str, str] | None = None,
        check: bool = True,
        **values: Any,
    ) -> PipelineResult:
        """Run every job in local containers; pipeline inputs and output places by name."""
        outputs = {k: str(v) for k, v in values.items() if k in self.spec.outputs}
        inputs = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in values.items()
            if k not in self.spec.outputs
        }
        planned = self.plan()
        own = engine is None
        eng = engine or DockerEngine.from_env()
        try:
            result = run_pipeline(
                eng,
                RunStore(Path(runs_dir)),
                planned,
                self.base,
                inputs,
                outputs,
                max_workers=max_workers,
                max_containers=max_containers,
                keep_going=keep_going,
                cache=cache,
                labels=labels or {},
                secrets={
                    n: v
                    for n, v in os.environ.items()
                    if any(n in j.module.secrets for j in planned.jobs.values())
                },
            )
        finally:
            if own and isinstance(eng, DockerEngine):
                eng.api.close()
        if check and result.state != "succeeded":
            raise RunError(
                f"pipeline '{self.spec.name}' run {result.record.id} "
                f"{result.record.state} (failed jobs: "
                f"{', '.join(result.failed) or '-'}); records in {runs_dir}"
            )
        return result

    def main(self, argv: list[str] | None = None) -> int:
        """A small command line: -i NAME=VALUE, -o NAME=PATH, --runs-dir; returns the status."""
        parser = argparse.ArgumentParser(description=self.spec.description or self.spec.name)
        parser.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("-o", "--output", action="append", default=[], metavar="NAME=PATH")
        parser.add_argument(
            "--runs-dir", default=os.environ.get("CONTAINEREXEC_RUNS_DIR", ".containerexec")
        )
        parser.add_argument("--max-workers", type=int, default=4)
        args = parser.parse_args(argv)
        try:
            values: dict[str, Any] = {
                **parse_pairs(args.input, "-i"),
                **parse_pairs(args.output, "-o"),
            }
            result = self.run(
                runs_dir=args.runs_dir, max_workers=args.max_workers, check=False, **values
            )
        except ContainerExecError as exc:
            print(f"Error: {exc}")
            return exc.exit_code
        for name, where in result.record.outputs.items():
            print(f"output {name} -> {where}")
        print(f"pipeline run {result.record.id}: {result.record.state}")
        return 0 if result.state == "succeeded" else 1


def _rebased(spec: PipelineSpec, base: Path, to: Path, keep: set[str]) -> PipelineSpec:
    jobs = {}
    for name, job in spec.jobs.items():
        ref = job.module
        if ref not in keep and pipelines.is_spec_path(ref, base):
            ref = Path(os.path.relpath(base / ref, to.resolve())).as_posix()
        jobs[name] = job.model_copy(update={"module": ref})
    return spec.model_copy(update={"jobs": jobs})


def pipeline(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    base: str | Path | None = None,
) -> Any:
    """Trace a function that calls modules into a Pipeline.

    Parameters become pipeline inputs (annotated as for @module); the function
    returns {output name: job output} (or one job output, or None). `base` is
    the folder paths are relative to (default: the function's file's folder).
    """

    def wrap(func: Callable[..., Any]) -> Pipeline:
        where = func.__qualname__
        folder = Path(base) if base is not None else Path(inspect.getfile(func)).parent
        params = pyfunc.function_params(func)
        docs = pyfunc.param_docs(func.__doc__)
        inputs: dict[str, Any] = {}
        for p in params:
            if p.name in RESERVED:
                raise UsageError(
                    f"{where}: parameter '{p.name}' is reserved by Pipeline.run; rename it"
                )
            if p.role != "input":
                raise UsageError(
                    f"{where}: parameter '{p.name}' is an {p.role}; a pipeline's "
                    "parameters are its inputs (outputs come from its jobs)"
                )
            inputs[p.name] = pyfunc.input_port(p, docs, path_defaults=True)
        builder = _Builder(folder.resolve())
        _state.builder = builder
        try:
            returned = func(**{p.name: InputRef(p.name) for p in params})
        finally:
            _state.builder = None
        data = {
            "name": name or pyfunc.module_name(func.__name__),
            "version": version or "0.0.0",
            "description": (
                description if description is not None else pyfunc.first_line(func.__doc__)
            ),
            "inputs": inputs,
            "outputs": _outputs(returned, where),
            "jobs": builder.jobs,
        }
        try:
            spec = PipelineSpec.model_validate(data)
        except Exception as exc:  # pydantic's message names the field
            raise UsageError(f"{where}: not a valid pipeline: {exc}") from None
        return Pipeline(spec, base=builder.base, modules=builder.modules)

    return wrap(fn) if fn is not None else wrap


def _outputs(returned: Any, where: str) -> dict[str, str]:
    if returned is None:
        return {}
    if isinstance(returned, OutputRef):
        return {returned.output: str(returned)}
    if isinstance(returned, Mapping):
        out = {}
        for k, v in returned.items():
            if not isinstance(v, OutputRef | Job):
                raise UsageError(f"{where}: output '{k}' must be a job output, got {v!r}")
            out[str(k)] = _value(v, f"{where}: output '{k}'")
        return out
    raise UsageError(f"{where}: return a dict of job outputs, one job output, or None")


def from_yaml(path: str | Path) -> Module | Pipeline:
    """A module or a pipeline from its YAML file (a pipeline has `jobs:`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        data = None  # let the loader report it with a position
    if isinstance(data, dict) and "jobs" in data:
        return Pipeline.from_yaml(path)
    return Module.from_yaml(path)


def from_func(fn: Any, **settings: Any) -> Module | Pipeline:
    """A module (when `image` or `build` is given, or for a ContainerModule) or a pipeline."""
    if isinstance(fn, Module | Pipeline):
        return fn
    is_class = isinstance(fn, ContainerModule) or (
        isinstance(fn, type) and issubclass(fn, ContainerModule)
    )
    if is_class or "image" in settings or "build" in settings:
        return Module.from_func(fn, **settings)
    return Pipeline.from_func(fn, **settings)
