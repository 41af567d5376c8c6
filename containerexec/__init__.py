"""containerexec: run pipeline modules in containers, pinned, parallel and replayable.

The public API; everything else is internal and may change. Each name is
imported on first use (module `__getattr__`), so `import containerexec`, and the
command line that comes with it, load neither the Docker SDK nor the run core
until they are needed.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # the names as mypy and editors see them
    from containerexec.authoring import (
        ContainerModule,
        InputDir,
        InputFile,
        Module,
        OutputDir,
        OutputFile,
        Pipeline,
        ShardFile,
        ShardIndex,
        ShardValue,
        from_func,
        from_yaml,
        module,
        pipeline,
    )
    from containerexec.engine.base import Engine
    from containerexec.engine.docker import DockerEngine
    from containerexec.errors import (
        BuildError,
        ContainerExecError,
        EngineError,
        EngineUnavailable,
        ImageError,
        OutputLocked,
        PipelineError,
        PullError,
        RecordError,
        RunError,
        RunLocked,
        ShardFailed,
        SpecError,
        UntrustedInput,
        UsageError,
    )
    from containerexec.model.bindings import Bindings, bind
    from containerexec.model.invocation import Invocation
    from containerexec.model.pipeline import PipelineSpec
    from containerexec.model.pipelinecheck import load_pipeline
    from containerexec.model.spec import ModuleSpec, load_spec
    from containerexec.pipelines.record import JobEvent
    from containerexec.run.executor import Executor, RunOptions
    from containerexec.run.results import RunResult, ShardEvent
    from containerexec.run.run import Run
    from containerexec.store.records import RunRecord, ShardRecord
    from containerexec.store.tree import RunStore

# public name -> the module that defines it
_WHERE: dict[str, str] = {
    "ContainerModule": "containerexec.authoring",
    "InputDir": "containerexec.authoring",
    "InputFile": "containerexec.authoring",
    "Module": "containerexec.authoring",
    "OutputDir": "containerexec.authoring",
    "OutputFile": "containerexec.authoring",
    "Pipeline": "containerexec.authoring",
    "ShardFile": "containerexec.authoring",
    "ShardIndex": "containerexec.authoring",
    "ShardValue": "containerexec.authoring",
    "from_func": "containerexec.authoring",
    "from_yaml": "containerexec.authoring",
    "module": "containerexec.authoring",
    "pipeline": "containerexec.authoring",
    "Engine": "containerexec.engine.base",
    "DockerEngine": "containerexec.engine.docker",
    "BuildError": "containerexec.errors",
    "ContainerExecError": "containerexec.errors",
    "EngineError": "containerexec.errors",
    "EngineUnavailable": "containerexec.errors",
    "ImageError": "containerexec.errors",
    "OutputLocked": "containerexec.errors",
    "PipelineError": "containerexec.errors",
    "PullError": "containerexec.errors",
    "RecordError": "containerexec.errors",
    "RunError": "containerexec.errors",
    "RunLocked": "containerexec.errors",
    "ShardFailed": "containerexec.errors",
    "SpecError": "containerexec.errors",
    "UntrustedInput": "containerexec.errors",
    "UsageError": "containerexec.errors",
    "Bindings": "containerexec.model.bindings",
    "bind": "containerexec.model.bindings",
    "Invocation": "containerexec.model.invocation",
    "PipelineSpec": "containerexec.model.pipeline",
    "load_pipeline": "containerexec.model.pipelinecheck",
    "ModuleSpec": "containerexec.model.spec",
    "load_spec": "containerexec.model.spec",
    "Executor": "containerexec.run.executor",
    "RunOptions": "containerexec.run.executor",
    "JobEvent": "containerexec.pipelines.record",
    "RunResult": "containerexec.run.results",
    "ShardEvent": "containerexec.run.results",
    "Run": "containerexec.run.run",
    "RunRecord": "containerexec.store.records",
    "ShardRecord": "containerexec.store.records",
    "RunStore": "containerexec.store.tree",
}

__all__ = [
    "Bindings",
    "BuildError",
    "ContainerExecError",
    "ContainerModule",
    "DockerEngine",
    "Engine",
    "EngineError",
    "EngineUnavailable",
    "Executor",
    "ImageError",
    "InputDir",
    "InputFile",
    "Invocation",
    "JobEvent",
    "Module",
    "ModuleSpec",
    "OutputDir",
    "OutputFile",
    "OutputLocked",
    "Pipeline",
    "PipelineError",
    "PipelineSpec",
    "PullError",
    "RecordError",
    "RunError",
    "RunLocked",
    "Run",
    "RunOptions",
    "RunRecord",
    "RunResult",
    "RunStore",
    "ShardEvent",
    "ShardFailed",
    "ShardFile",
    "ShardIndex",
    "ShardRecord",
    "ShardValue",
    "SpecError",
    "UntrustedInput",
    "UsageError",
    "bind",
    "from_func",
    "from_yaml",
    "load_pipeline",
    "load_spec",
    "module",
    "pipeline",
]


def __getattr__(name: str) -> _typing.Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'containerexec' has no attribute '{name}'")
    value = getattr(_importlib.import_module(where), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
