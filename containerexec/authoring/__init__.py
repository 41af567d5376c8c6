"""Modules and pipelines written in Python: the public names, in one place to import from.

    from containerexec.authoring import InputDir, OutputDir, module

    @module(image="containerexec/base:bookworm")
    def count(corpus: InputDir, counts: OutputDir, min_count: int = 1) -> None: ...

A module's source file runs inside its container, where only the standard
library is sure to exist: these names are stood in for there (see entry.py),
so a module file imports them from here and nothing else from containerexec.
"""

from __future__ import annotations

from containerexec.authoring.functions import (
    InputDir,
    InputFile,
    OutputDir,
    OutputFile,
    ShardFile,
    ShardIndex,
    ShardValue,
)
from containerexec.authoring.modules import ContainerModule, Module, module
from containerexec.authoring.pipelines import Pipeline, from_func, from_yaml, pipeline
from containerexec.authoring.requirements import Requirements
from containerexec.authoring.tracing import Job, OutputRef

__all__ = [
    "ContainerModule",
    "InputDir",
    "InputFile",
    "Job",
    "Module",
    "OutputDir",
    "OutputFile",
    "OutputRef",
    "Pipeline",
    "Requirements",
    "ShardFile",
    "ShardIndex",
    "ShardValue",
    "from_func",
    "from_yaml",
    "module",
    "pipeline",
]
