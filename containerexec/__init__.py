"""containerexec: run pipeline modules in containers, pinned, parallel and replayable.

The public API; everything else is internal and may change.
"""

from __future__ import annotations

from .authoring import (
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
from .bindings import Bindings, bind
from .engine import DockerEngine, Engine
from .errors import (
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
    SpecError,
    UsageError,
)
from .executor import Executor, RunOptions, RunResult
from .invocation import Invocation
from .pipeline import PipelineSpec, load_pipeline
from .records import RunRecord, RunStore, ShardRecord
from .spec import ModuleSpec, load_spec

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
    "RunOptions",
    "RunRecord",
    "RunResult",
    "RunStore",
    "ShardRecord",
    "SpecError",
    "UsageError",
    "bind",
    "from_func",
    "from_yaml",
    "load_pipeline",
    "load_spec",
    "module",
    "pipeline",
]
