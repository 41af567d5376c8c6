"""The records (versioned JSON): RunRecord, ShardRecord and their parts; loading, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from containerexec.errors import RecordError, UntrustedInput
from containerexec.model.invocation import Invocation
from containerexec.model.names import JobId, ModuleName, PortName, RunId

# 2: run records say how their shards run (labels, user, grace, log limit) and the
# signal that cancelled them, so a shard can run from the run folder alone.
# 3: run records say why a run stopped early (`reason`) and its `deadline_s`.
# 4: a shard may record the inputs it read (a resume that accepted changed inputs),
# and a glob shard's mount may be its own file alone (Mount.shard_file).
# 5: env values every shard shares (a Python module's boot script and source) are kept
# once in the run record (`shared_env`) and named by sha256 in shard records (`env_shared`);
# an attempt may carry its resource `trace`; run records name their `engine` and its version.
SCHEMA_VERSION = 5
# Shorter values stay in each record: naming one by its sha256 would save little.
SHARED_MIN_CHARS = 256
M = TypeVar("M", bound=BaseModel)
RunState = Literal["running", "succeeded", "failed", "cancelled"]
ShardState = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageRecord(Record):
    """The environment as resolved once for the whole run."""

    ref: str = Field(description="As written in the spec, or the build tag.")
    pinned: str = Field(description="What every container of the run used.")
    id: str
    digest: str | None = Field(None, description="repo@sha256:... when it came from a registry.")
    source: Literal["pull", "build", "local"]
    lock_sha256: str | None = Field(
        None, description="sha256 of the Python package lock installed on the image, if any."
    )


class EngineRecord(Record):
    """The container engine a run's shards ran on: a worker on a cluster node uses it too."""

    name: Annotated[str, AfterValidator(lambda v: check_engine(v))] = Field(
        description="'docker' or 'podman'."
    )
    version: str = Field("", max_length=64)
    rootless: bool = False


ENGINE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")


def check_engine(value: str) -> str:
    if not ENGINE_RE.match(value):
        raise ValueError(f"{value[:80]!r} is not an engine name ([a-z][a-z0-9_-]*)")
    return value


class FileEntry(Record):
    path: str
    size: int
    sha256: str


class AttemptTrace(Record):
    """What one attempt's container used, read from its cgroup; None: this host cannot say."""

    peak_memory_bytes: int | None = Field(None, description="The container's memory peak.")
    cpu_seconds: float | None = Field(None, description="User plus system CPU time.")
    wall_seconds: float | None = Field(None, description="From start to exit.")
    read_bytes: int | None = Field(None, description="Block I/O read from disks.")
    write_bytes: int | None = Field(None, description="Block I/O written to disks.")
    packed: bool = Field(
        False,
        description="A packed value: wall_seconds is its own, the other figures its "
        "batch container's up to this value's end.",
    )


class AttemptRecord(Record):
    number: int
    container_id: str | None = None
    started_at: float
    ended_at: float
    exit_code: int | None = None
    oom_killed: bool = False
    failure: str | None = None
    message: str = ""
    counted: bool = True
    trace: AttemptTrace | None = Field(None, description="None: the container never started.")


class ShardRecord(Record):
    schema_version: int = SCHEMA_VERSION
    run_id: RunId
    index: int
    value: str
    state: ShardState
    failure: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    message: str = ""
    attempts: list[AttemptRecord] = Field(default_factory=list)
    outputs_committed: bool = False
    cached: bool = False
    log_path: str
    log_tail: list[str] = Field(default_factory=list)
    stderr_tail: list[str] = Field(default_factory=list)
    invocation: Invocation
    input_manifests: dict[str, list[FileEntry]] | None = Field(
        None,
        description="The inputs this shard read, when a resume accepted inputs that differ "
        "from the run's input_manifests; None: it read those.",
    )
    returned: Any = Field(
        None, description="What the shard's code returned (Python modules), as JSON."
    )
    env_shared: dict[str, str] = Field(
        default_factory=dict,
        description="Invocation env names whose values the run record keeps in `shared_env`, "
        "by sha256; `full()` puts them back. Empty in records written before schema 5.",
    )


# A placement's registry name ("slurm"; later "kubernetes"): open, so a new backend needs
# no new record schema, but checked, since it names a folder of the run (RUN_DIR/<kind>).
PLACEMENT_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")


def check_placement(value: str) -> str:
    if not PLACEMENT_RE.match(value):
        raise ValueError(f"{value[:80]!r} is not a placement name ([a-z][a-z0-9_-]*)")
    return value


class SchedulerRecord(Record):
    """Where a run's shards ran, when not on this machine: the cluster and its job ids."""

    kind: Annotated[str, AfterValidator(check_placement)] = Field(
        description="The placement's registry name, e.g. 'slurm'."
    )
    job_ids: list[JobId] = Field(default_factory=list, description="One per submitted array.")


class RunRecord(Record):
    schema_version: int = SCHEMA_VERSION
    run_id: RunId
    module: ModuleName
    version: str
    spec_path: str | None
    spec: dict[str, Any]
    image: ImageRecord
    inputs: dict[PortName, Any]
    outputs: dict[PortName, str]
    input_manifests: dict[PortName, list[FileEntry]] = Field(default_factory=dict)
    secret_names: list[str] = Field(default_factory=list)
    shard_count: int
    shards_selected: list[int] | None = None
    max_parallel: int
    state: RunState
    exit_code: int | None = Field(
        None, description="The command's exit status, for a run of one shard."
    )
    counts: dict[str, int] = Field(default_factory=dict)
    started_at: float
    ended_at: float | None = None
    host: str = ""
    pid: int = 0
    pipeline_run: RunId | None = None
    repro_of: RunId | None = None  # the run this one replays a shard of
    signal: int | None = Field(None, description="The signal that cancelled the run.")
    cache: bool = Field(
        False, description="Its shards use the shard cache (a pipeline's jobs, by default)."
    )
    reason: str | None = Field(
        None,
        description="Why the run stopped early: 'fail_fast: shard 3 exited with 2' or "
        "'deadline_exceeded: ...'.",
    )
    deadline_s: float | None = Field(None, description="The run's deadline, from its start.")
    notes: list[str] = Field(
        default_factory=list,
        description="What its resumes said: inputs accepted as changed, a changed build "
        "folder or Python source (the shards a resume ran ran the new source).",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Put on every container.")
    user: str | None = None
    grace_s: float = 5.0
    log_limit_bytes: int = 16 << 20
    scheduler: SchedulerRecord | None = Field(None, description="None: shards ran here.")
    engine: EngineRecord | None = Field(None, description="None: recorded before schema 5.")
    shared_env: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 -> an env value every shard gets verbatim (a Python module's boot "
        "script and source), stored here once instead of in each shard record.",
    )


def shared_values(env: dict[str, str]) -> dict[str, str]:
    """The long env values of a spec that every shard gets as they are: sha256 -> value."""
    return {_sha(v): v for v in env.values() if len(v) >= SHARED_MIN_CHARS and "${{" not in v}


def lean(rec: ShardRecord, shared: dict[str, str]) -> ShardRecord:
    """`rec` with each env value the run keeps in `shared` named by its sha256 instead."""
    env, refs = {}, dict(rec.env_shared)
    for name, value in rec.invocation.env.items():
        digest = _sha(value) if len(value) >= SHARED_MIN_CHARS else ""
        if digest in shared:
            refs[name] = digest
        else:
            env[name] = value
    if refs == rec.env_shared:
        return rec
    inv = rec.invocation.model_copy(update={"env": env})
    return rec.model_copy(update={"invocation": inv, "env_shared": refs})


def full(rec: ShardRecord, run: RunRecord) -> ShardRecord:
    """`rec` with the env values its run record keeps put back: its Invocation whole again.

    Raises:
        UntrustedInput: the run record lacks one, or holds another value under its sha256.
    """
    if not rec.env_shared:
        return rec
    env = dict(rec.invocation.env)
    for name, digest in rec.env_shared.items():
        value = run.shared_env.get(digest)
        if value is None or _sha(value) != digest:
            raise UntrustedInput(
                f"run '{run.run_id}' shard {rec.index}",
                f"env {name!r}: the run record holds no value with sha256 {digest[:12]}...; "
                "the record was edited or its run.json is not this run's",
            )
        env[name] = value
    inv = rec.invocation.model_copy(update={"env": env})
    return rec.model_copy(update={"invocation": inv, "env_shared": {}})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_model(path: Path, model: type[M]) -> M:
    """Load a record, refusing newer schema versions with a clear message."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(str(path), "no such record") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(str(path), f"unreadable record: {exc}") from None
    except RecursionError:  # thousands of nested brackets: someone else's hostile file
        raise UntrustedInput(str(path), "not a valid record: nested too deeply") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RecordError(
            str(path),
            f"written by a newer containerexec (schema {version}, this one reads "
            f"{SCHEMA_VERSION}); upgrade containerexec ('pip install -U containerexec')",
            version,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UntrustedInput(str(path), f"not a valid record: {where}: {first['msg']}") from None


def write_json(path: Path, data: Any, *, durable: bool = True, compact: bool = False) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half.

    The rename alone is atomic for readers and survives the writer being killed;
    `durable` adds an fsync so the new content also survives a crash of the machine.
    `compact`: one line, by json's C encoder (indenting takes its pure-Python one, about
    0.2 ms a shard record: a good part of a packed `true` value's cost).
    """
    if compact:
        text = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    else:
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if not path.parent.is_dir():  # a stat: a failing mkdir takes the folder's lock
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_durable(paths: list[Path]) -> None:
    """fsync files written with `durable=False`, then their folders (the renames) once each.

    Only these files: os.sync() would flush every dirty page of the machine.
    """
    for path in [*paths, *dict.fromkeys(p.parent for p in paths)]:
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
