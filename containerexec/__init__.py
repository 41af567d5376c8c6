"""containerexec: run pipeline modules in containers, pinned, parallel and replayable.

The public API; everything else is internal and may change.
"""

from __future__ import annotations

from containerexec.authoring import (
    ContainerModule,
    InputDir,
    InputFile,
    Module,
    OutputDir,
    OutputFile,
    Pipeline,
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
from containerexec.model.pipeline import PipelineSpec, load_pipeline
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import RunResult
from containerexec.run.run import Run
from containerexec.store.records import RunRecord, ShardRecord
from containerexec.store.tree import RunStore

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
    "Module",
    "ModuleSpec",
    "OutputDir",
    "OutputFile",
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
    "ShardFailed",
    "ShardRecord",
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
