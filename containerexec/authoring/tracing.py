"""The tracing context of @pipeline: module calls inside the function become jobs.

    with tracing(base) as trace:              # what @pipeline does around the function
        returned = fn(corpus=InputRef("corpus"))
    trace.jobs, pipeline_outputs(returned, where)

Inside the context, calling a module adds a job and returns a Job whose outputs are
OutputRefs. The values recorded are the pipeline format's wire form
(`${{inputs.NAME}}`, `${{jobs.JOB.outputs.NAME}}`), so the PipelineSpec built from
them is the one a YAML file with the same jobs gives.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from containerexec.errors import UsageError
from containerexec.model.spec import ModuleSpec

# One trace per thread: two threads may each build a pipeline at the same time.
_state = threading.local()


class JobModule(Protocol):
    """What a job needs of its module: the spec, where it came from, how to write it."""

    spec: ModuleSpec
    spec_path: Path | None

    @property
    def for_run(self) -> Callable[[Mapping[str, Any]], JobModule] | None:
        """Makes the module again with a run's values (a ContainerModule's array()), or None."""

    @property
    def name(self) -> str: ...

    def write(self, path: str | Path) -> Path: ...


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

    def __init__(self, job: str, module: JobModule) -> None:
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
    module: JobModule

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.name, self.module)


@dataclass
class Trace:
    """The jobs recorded so far, and the modules they name (by the ref written in `module:`)."""

    base: Path
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, JobModule] = field(default_factory=dict)


@contextmanager
def tracing(base: Path) -> Iterator[Trace]:
    """Record module calls made in this thread as jobs; `base` is where module refs start."""
    outer: Trace | None = getattr(_state, "trace", None)
    trace = Trace(base)
    _state.trace = trace
    try:
        yield trace
    finally:
        _state.trace = outer


def building() -> bool:
    """True while a @pipeline function is being traced."""
    return getattr(_state, "trace", None) is not None


def add_job(module: JobModule, name: str | None, inputs: Mapping[str, Any]) -> Job:
    """Record one job of the pipeline being traced."""
    trace: Trace | None = getattr(_state, "trace", None)
    if trace is None:
        raise UsageError(f"module '{module.name}': .job() works only inside a @pipeline function")
    if name is None:
        stem = module.name.replace("-", "_").replace(".", "_")
        stem = stem if stem.isidentifier() else f"job_{stem}"
        name, n = stem, 2
        while name in trace.jobs:
            name, n = f"{stem}_{n}", n + 1
    elif name in trace.jobs:
        raise UsageError(f"two jobs are named '{name}'; give each job its own name")
    values = {k: job_value(v, f"job '{name}' input '{k}'") for k, v in inputs.items()}
    trace.jobs[name] = {"module": _module_ref(trace, module), "inputs": values}
    return Job(name, module)


def job_value(value: Any, where: str) -> Any:
    """A value passed to a job -> what the pipeline spec holds: a literal or a reference."""
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


def pipeline_outputs(returned: Any, where: str) -> dict[str, str]:
    """What a @pipeline function returned -> the pipeline's outputs."""
    if returned is None:
        return {}
    if isinstance(returned, OutputRef):
        return {returned.output: str(returned)}
    if isinstance(returned, Mapping):
        out = {}
        for k, v in returned.items():
            if not isinstance(v, OutputRef | Job):
                raise UsageError(f"{where}: output '{k}' must be a job output, got {v!r}")
            out[str(k)] = job_value(v, f"{where}: output '{k}'")
        return out
    raise UsageError(f"{where}: return a dict of job outputs, one job output, or None")


def _module_ref(trace: Trace, module: JobModule) -> str:
    """How the pipeline names a module: a spec path from `base`, or `NAME.yaml` for Python."""
    for ref, known in trace.modules.items():
        if known is module:
            return ref
    if is_yaml(module.spec_path):
        assert module.spec_path is not None
        ref = Path(os.path.relpath(module.spec_path, trace.base)).as_posix()
    else:
        ref, n = f"{module.name}.yaml", 2
        while ref in trace.modules:
            ref, n = f"{module.name}-{n}.yaml", n + 1
    trace.modules[ref] = module
    return ref


def is_yaml(path: Path | None) -> bool:
    """True for a module read from a spec file (not generated from Python)."""
    return path is not None and path.suffix in (".yaml", ".yml")
