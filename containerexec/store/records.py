"""RunRecord and ShardRecord (versioned JSON), the run store's layout, atomic writes, the run lock.

A run's state is one small `run.json` plus one file per shard, so a shard event
rewrites only that shard's file, however many shards the run has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from containerexec.errors import RecordError, RunLocked
from containerexec.model.invocation import Invocation

SCHEMA_VERSION = 1
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


class FileEntry(Record):
    path: str
    size: int
    sha256: str


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


class ShardRecord(Record):
    schema_version: int = SCHEMA_VERSION
    run_id: str
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


class RunRecord(Record):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    module: str
    version: str
    spec_path: str | None
    spec: dict[str, Any]
    image: ImageRecord
    inputs: dict[str, Any]
    outputs: dict[str, str]
    input_manifests: dict[str, list[FileEntry]] = Field(default_factory=dict)
    secret_names: list[str] = Field(default_factory=list)
    shard_count: int
    shards_selected: list[int] | None = None
    max_parallel: int
    state: RunState
    exit_code: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    started_at: float
    ended_at: float | None = None
    host: str = ""
    pid: int = 0
    pipeline_run: str | None = None
    repro_of: str | None = None  # the run this one replays a shard of


class RunStore:
    """The folder of run records: `<root>/runs/<run_id>/{run.json,shards/,logs/,staging/}`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.runs = self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def shard_path(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "shards" / f"{index:06d}.json"

    def log_path(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "logs" / f"{index:06d}.log"

    def staging(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "staging" / f"{index:06d}"

    def write_run(self, record: RunRecord) -> Path:
        path = self.run_dir(record.run_id) / "run.json"
        write_json(path, record.model_dump(mode="json"))
        return path

    def write_shard(self, record: ShardRecord, *, durable: bool = True) -> None:
        """`durable=False` skips the fsync: for states a crash may lose (see write_json)."""
        write_json(
            self.shard_path(record.run_id, record.index),
            record.model_dump(mode="json"),
            durable=durable,
        )

    def resolve_id(self, run: str) -> str:
        """A run id, a unique prefix of one, or 'last' -> the run id."""
        if run == "last":
            ids = self.ids()
            if not ids:
                raise RecordError(str(self.runs), "no runs recorded here yet")
            return max(ids, key=lambda i: (self.run_dir(i) / "run.json").stat().st_mtime)
        if (self.run_dir(run) / "run.json").is_file():
            return run
        matches = [i for i in self.ids() if i.startswith(run)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise RecordError(str(self.runs), f"'{run}' matches {len(matches)} runs; give more")
        raise RecordError(
            str(self.runs), f"no run '{run}'; 'containerexec runs list' shows the runs here"
        )

    def ids(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if (p / "run.json").is_file())

    def load_run(self, run: str) -> RunRecord:
        run_id = self.resolve_id(run)
        return load_model(self.run_dir(run_id) / "run.json", RunRecord)

    def load_shards(self, run_id: str) -> dict[int, ShardRecord]:
        return {rec.index: rec for rec in self.iter_shards(run_id)}

    def iter_shards(self, run_id: str, *, skip_unreadable: bool = False) -> Iterator[ShardRecord]:
        """The run's shard records in index order, one at a time (memory flat in shards).

        `skip_unreadable` passes over a record a machine crash left empty (only
        'running' records are written without fsync), so a resume reruns that shard.
        """
        folder = self.run_dir(run_id) / "shards"
        if not folder.is_dir():
            return
        for name in sorted(n for n in os.listdir(folder) if n.endswith(".json")):
            try:
                yield load_model(folder / name, ShardRecord)
            except RecordError:
                if not skip_unreadable:
                    raise

    def lock(self, run_id: str) -> RunLock:
        return RunLock(self.run_dir(run_id) / "lock", run_id)


def load_model(path: Path, model: type[M]) -> M:
    """Load a record, refusing newer schema versions with a clear message."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(str(path), "no such record") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(str(path), f"unreadable record: {exc}") from None
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
        raise RecordError(str(path), f"not a valid record: {where}: {first['msg']}") from None


def write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half.

    The rename alone is atomic for readers and survives the writer being killed;
    `durable` adds an fsync so the new content also survives a crash of the machine.
    """
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
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


class RunLock:
    """An flock on the run folder: released by the kernel when the holder dies, even by SIGKILL."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise RunLocked(self.run_id, int(holder) if holder.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def held(self) -> bool:
        """Whether a live process holds the lock now (a SIGKILLed holder does not)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
