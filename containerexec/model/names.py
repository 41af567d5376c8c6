"""The names containerexec makes, and the one check every name read from a record passes.

A record, an export or a bundle may come from someone else. Its run ids, module names,
port names and shard file names become paths and command words here, so each is checked
against the patterns the project itself writes when the record is read: no `/`, no
`..`, no control characters, nothing absolute. The pydantic types below carry the check,
so a model that uses them cannot hold a bad name.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# What new_run_id and the pipeline runner make: NAME-YYYYMMDD-HHMMSS-xxxxxx.
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")
MODULE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
PORT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# A pipeline job: a port-like name, or 'parent/child' for a job of a pipeline component
# (at most 8 levels); each part is a folder under the pipeline's jobs/, never '..'.
JOB_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}(/[A-Za-z_][A-Za-z0-9_]{0,127}){0,7}\Z")
# Docker's own rule for container names.
CONTAINER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}\Z")
# A Slurm job id, with an array task suffix at most.
JOB_ID_RE = re.compile(r"[0-9]{1,20}(_[0-9]{1,10})?(;[A-Za-z0-9_.-]{1,64})?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(value: str) -> str:
    return repr(value[:80])


def check_run_id(value: str) -> str:
    if not RUN_ID_RE.match(value) or ".." in value:
        raise ValueError(
            f"{_shown(value)} is not a run id (letters, digits, '_', '.', '-'; no '/' or '..')"
        )
    return value


def check_module(value: str) -> str:
    if not MODULE_RE.match(value) or ".." in value:
        raise ValueError(f"{_shown(value)} is not a module name ([a-z0-9][a-z0-9_.-]*)")
    return value


def check_port(value: str) -> str:
    if not PORT_RE.match(value):
        raise ValueError(f"{_shown(value)} is not an input or output name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def check_job(value: str) -> str:
    if not JOB_RE.match(value):
        raise ValueError(
            f"{_shown(value)} is not a pipeline job name ([A-Za-z_][A-Za-z0-9_]*, or "
            "'parent/child' for a pipeline component's job)"
        )
    return value


def job_run_suffix(job: str) -> str:
    """A job's part of its run id: 'train/fit' -> 'train.fit' (run ids hold no '/')."""
    return check_job(job).replace("/", ".")


# Mounts containerexec adds itself: a Python module's returned value (run/returned.py) and a
# packed batch's control, state and staging folders (run/packing/batch.py).
INTERNAL_MOUNTS = frozenset(
    {".returned", ".batch-ctl", ".batch-state", ".batch-stage", ".batch-links"}
)


def check_mount_name(value: str) -> str:
    """An input or output name, or one of the mounts containerexec adds itself."""
    return value if value in INTERNAL_MOUNTS else check_port(value)


def check_container(value: str) -> str:
    if not CONTAINER_RE.match(value) or ".." in value:
        raise ValueError(f"{_shown(value)} is not a container name")
    return value


def check_job_id(value: str) -> str:
    if not JOB_ID_RE.match(value):
        raise ValueError(f"{_shown(value)} is not a Slurm job id")
    return value


def check_relpath(value: str) -> str:
    """A relative POSIX path inside a folder: no empty, '.' or '..' part, nothing absolute."""
    parts = value.split("/")
    if (
        not value
        or len(value) > 4096
        or value.startswith("/")
        or _CONTROL.search(value)
        or "\\" in value
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"{_shown(value)} is not a relative path inside its folder (no '..', no "
            "absolute path, no control characters)"
        )
    return value


def check_shard_file(value: str) -> str:
    """Empty (the whole input is mounted) or a relative path inside the input."""
    return value if value == "" else check_relpath(value)


RunId = Annotated[str, AfterValidator(check_run_id)]
ModuleName = Annotated[str, AfterValidator(check_module)]
PortName = Annotated[str, AfterValidator(check_port)]
JobName = Annotated[str, AfterValidator(check_job)]
MountName = Annotated[str, AfterValidator(check_mount_name)]
ContainerName = Annotated[str, AfterValidator(check_container)]
JobId = Annotated[str, AfterValidator(check_job_id)]
RelPath = Annotated[str, AfterValidator(check_relpath)]
ShardFile = Annotated[str, AfterValidator(check_shard_file)]

__all__ = [
    "ContainerName",
    "INTERNAL_MOUNTS",
    "JobId",
    "JobName",
    "ModuleName",
    "MountName",
    "PortName",
    "RelPath",
    "RunId",
    "ShardFile",
    "check_container",
    "check_job",
    "check_job_id",
    "job_run_suffix",
    "check_module",
    "check_mount_name",
    "check_port",
    "check_relpath",
    "check_run_id",
    "check_shard_file",
]
