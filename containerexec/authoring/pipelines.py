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
import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from containerexec.authoring import functions as pyfunc
from containerexec.authoring.engine import connected
from containerexec.authoring.modules import ContainerModule, Module
from containerexec.authoring.specfile import dump_yaml
from containerexec.authoring.tracing import (
    InputRef,
    JobModule,
    is_yaml,
    pipeline_outputs,
    tracing,
)
from containerexec.display.pipelines import PipelineDisplay, pipeline_summary
from containerexec.engine.base import Engine
from containerexec.errors import ContainerExecError, RunError, UsageError
from containerexec.model import pipelinecheck, yamlsource
from containerexec.model.bindings import parse_pairs
from containerexec.model.pipeline import ModuleLoader, PipelineSpec, Plan
from containerexec.model.spec import ModuleSpec
from containerexec.pipelines.orchestrator import run_pipeline
from containerexec.pipelines.record import JobEvent, PipelineResult
from containerexec.store.tree import RunStore

RESERVED = (
    "runs_dir",
    "engine",
    "max_workers",
    "max_containers",
    "keep_going",
    "cache",
    "labels",
    "check",
    "progress",
)


class Pipeline:
    """A PipelineSpec plus its modules; made from YAML or a @pipeline function."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        base: Path,
        modules: Mapping[str, JobModule],
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
        return cls(pipelinecheck.load_pipeline(path), base=path.parent, modules={}, path=path)

    @classmethod
    def from_func(cls, fn: Callable[..., Any], **settings: Any) -> Pipeline:
        """Trace `fn` (settings as for @pipeline) into a Pipeline."""
        if isinstance(fn, Pipeline):
            return fn
        made: Pipeline = pipeline(**settings)(fn)
        return made

    def loader(self) -> ModuleLoader:
        """Modules written in Python first, then spec files next to the pipeline."""
        files = pipelinecheck.file_loader(self.base)

        def load(ref: str) -> tuple[Any, Path | None]:
            if ref in self.modules:
                return self.modules[ref].spec, self.modules[ref].spec_path
            return files(ref)

        return load

    def _respec(self, job: str, inputs: Mapping[str, Any]) -> ModuleSpec | None:
        """A job of a ContainerModule, made again with the job's inputs (its array())."""
        module = self.modules.get(self.spec.jobs[job].module)
        if module is None or module.for_run is None:
            return None
        return module.for_run(inputs).spec

    def plan(self) -> Plan:
        """Check the whole pipeline with its modules; PipelineError lists every problem."""
        if self.path is not None and not self.modules:
            return pipelinecheck.check_pipeline(self.path)
        return pipelinecheck.plan(self.spec, self.base, load_module=self.loader())

    def to_yaml(self) -> str:
        return dump_yaml(self.spec.model_dump(mode="json", exclude_defaults=True))

    def write(self, path: str | Path) -> Path:
        """The pipeline YAML, plus the spec of each Python module beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        python = {ref for ref, m in self.modules.items() if not is_yaml(m.spec_path)}
        for ref in python:
            self.modules[ref].write(path.parent / ref)
        spec = self.spec
        if path.parent.resolve() != self.base.resolve():
            spec = _rebased(spec, self.base, path.parent, python)
        path.write_text(dump_yaml(spec.model_dump(mode="json", exclude_defaults=True)))
        return path

    def run(
        self,
        *,
        runs_dir: str | Path = ".containerexec",
        engine: Engine | str | None = None,
        max_workers: int = 4,
        max_containers: int | None = None,
        keep_going: bool = False,
        cache: bool = True,
        labels: Mapping[str, str] | None = None,
        check: bool = True,
        progress: bool | Callable[[JobEvent], None] = False,
        **values: Any,
    ) -> PipelineResult:
        """Run every job in local containers; pipeline inputs and output places by name.

        `progress=True` shows what `containerexec pipeline run` shows on stderr (a live
        table of jobs, then the summary); a callable instead gets each JobEvent (a job
        started, finished or skipped, or one of its shards' ShardEvent in `shard`).
        """
        outputs = {k: str(v) for k, v in values.items() if k in self.spec.outputs}
        inputs = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in values.items()
            if k not in self.spec.outputs
        }
        planned = self.plan()
        secrets = {
            n: v
            for n, v in os.environ.items()
            if any(n in j.module.secrets for j in planned.jobs.values())
        }
        shown = PipelineDisplay(planned) if progress is True else None
        with connected(engine) as eng, shown or contextlib.nullcontext():
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
                secrets=secrets,
                respec=self._respec,
                on_event=shown.job_event if shown else progress if callable(progress) else None,
            )
        if shown:
            pipeline_summary(result)
        if check and result.state != "succeeded":
            raise RunError(
                f"pipeline '{self.spec.name}' run {result.record.id} "
                f"{result.record.state} (failed jobs: "
                f"{', '.join(result.failed) or '-'}); records in {runs_dir}"
            )
        return result

    def main(
        self, argv: list[str] | None = None, *, out: Callable[[str], Any] | None = None
    ) -> int:
        """The pipeline as a script: -i NAME=VALUE, -o NAME=PATH, --runs-dir; returns the status.

        This is an edge, like the CLI: it reports in lines given to `out` (default:
        standard output), and a ContainerExecError becomes one `Error: ...` line and
        its exit code. `--help` and bad flags are argparse's (it exits).
        """
        say = out or _stdout_line
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
            say(f"Error: {exc}")
            return exc.exit_code
        for name, where in result.record.outputs.items():
            say(f"output {name} -> {where}")
        say(f"pipeline run {result.record.id}: {result.record.state}")
        return 0 if result.state == "succeeded" else 1


def _stdout_line(line: str) -> None:
    sys.stdout.write(f"{line}\n")


def _rebased(spec: PipelineSpec, base: Path, to: Path, keep: set[str]) -> PipelineSpec:
    jobs = {}
    for name, job in spec.jobs.items():
        ref = job.module
        if ref not in keep and pipelinecheck.is_spec_path(ref, base):
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
        with tracing(folder.resolve()) as trace:
            returned = func(**{p.name: InputRef(p.name) for p in params})
        data = {
            "name": name or pyfunc.module_name(func.__name__),
            "version": version or "0.0.0",
            "description": (
                description if description is not None else pyfunc.first_line(func.__doc__)
            ),
            "inputs": inputs,
            "outputs": pipeline_outputs(returned, where),
            "jobs": trace.jobs,
        }
        spec = pipelinecheck.validate_pipeline(data, trace.base, f"@pipeline {where}")
        return Pipeline(spec, base=trace.base, modules=trace.modules)

    return wrap(fn) if fn is not None else wrap


def from_yaml(path: str | Path) -> Module | Pipeline:
    """A module or a pipeline from its YAML file (a pipeline has `jobs:`)."""
    path = Path(path)
    try:
        data = yamlsource.parse(path.read_text(), str(path)).data
    except OSError:
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
