"""A small in-memory Engine for scheduler properties only (parallelism, retries, failure limits,
the pipeline DAG rules).

It never stands in for Docker where container behaviour matters; tests/engine/ covers that.
Its containers run no code: they wait, exit as scripted, and write a few bytes into their
output mounts so that jobs with outputs can succeed and caches can be keyed on something.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from containerexec.engine.base import (
    ContainerInfo,
    EngineIdentity,
    EngineLost,
    ExitStatus,
    ImageInfo,
    Progress,
    StartFailed,
    Stats,
    WaitTimeout,
)
from containerexec.errors import BuildError, EngineError, EngineUnavailable, PullError
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation, Mount


@dataclass(frozen=True)
class Outcome:
    """What a fake container does: run for `seconds`, print `output` (and `errors` on its
    stderr), exit with `exit_code`.

    `files` ({"OUTPUT/rel/path": bytes}) is written into the output mount named OUTPUT when
    the container starts; None writes fake_output() instead. `hold` keeps the container
    running until the event is set (or it is stopped), for tests that need overlap.
    """

    exit_code: int = 0
    seconds: float = 0.0
    oom_killed: bool = False
    output: bytes = b""
    errors: bytes = b""
    lost: bool = False  # the engine goes away while it runs
    files: Mapping[str, bytes] | None = None
    hold: threading.Event | None = None
    # Its cgroup's figures while it runs (Engine.stats); None: this host cannot read them.
    stats: Stats | None = field(default_factory=lambda: FAKE_STATS)


FAKE_STATS = Stats(
    memory_peak_bytes=12 << 20,
    memory_bytes=8 << 20,
    cpu_seconds=0.25,
    read_bytes=0,
    write_bytes=4096,
)


def fake_output(inv: Invocation) -> dict[str, bytes]:
    """One small file per output mount, its bytes a function of the argv and the inputs' content
    (as a deterministic command's would be), so a changed input changes what lands downstream.

    The file is the path the argv names under the mount (a file output), else
    `<module>-<shard>.txt` (one per shard, so an array's shards never collide).
    """
    digest = hashlib.sha256("\0".join(inv.argv).encode())
    for m in inv.mounts:
        if m.kind == "input":
            _hash_tree(digest, Path(m.source))
    body = f"{inv.module} shard {inv.shard_index} {digest.hexdigest()[:16]}\n".encode()
    out: dict[str, bytes] = {}
    for m in inv.mounts:
        if m.kind == "output":
            out[f"{m.name}/{_named_file(inv, m) or f'{inv.module}-{inv.shard_index}.txt'}"] = body
    return out


def python_shard(inv: Invocation, n: int) -> Outcome:
    """A fake Python module's shard: its outputs as fake_output makes them, and `None`
    returned (fake_output would write its line where the value's JSON goes)."""
    files = {k: v for k, v in fake_output(inv).items() if not k.startswith(".returned/")}
    return Outcome(files={**files, ".returned/value.json": b"null"})


def _named_file(inv: Invocation, mount: Mount) -> str | None:
    prefix = mount.target + "/"
    for arg in [*inv.argv, *inv.env.values()]:
        if prefix in arg:
            return arg.split(prefix, 1)[1].split()[0] or None
    return None


def _hash_tree(digest: hashlib._Hash, root: Path) -> None:
    if root.is_file():
        digest.update(root.read_bytes())
        return
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())


Script = Callable[[Invocation, int], Outcome]  # (invocation, attempt number from 1) -> Outcome


@dataclass
class FakeContainer:
    inv: Invocation
    outcome: Outcome
    stopped: threading.Event = field(default_factory=threading.Event)
    state: str = "created"


class FakeEngine:
    """Containers that sleep and exit as `script` says; counts what the scheduler did.

    `created` holds every invocation created, `events` ("start" | "exit", run id, shard)
    in the order they happened, and `on_start` (when set) is called with each container's
    invocation just after it starts, outside the lock (to cancel, or to release a hold).
    """

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda inv, n: Outcome())
        self.root: Path | None = Path("/var/lib/docker")  # the engine's data folder
        self.sockets: tuple[str, ...] = ("/var/run/docker.sock", "/run/docker.sock")
        # What identity() says; a test sets cannot_limit to play a rootless engine.
        self.ident = EngineIdentity("docker", "fake")
        self.lock = threading.Lock()
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.attempts: dict[int, int] = {}
        self.running = 0
        self.max_running = 0
        self.started: list[int] = []
        self.created: list[Invocation] = []
        self.events: list[tuple[str, str, int]] = []
        self.on_start: Callable[[Invocation], None] | None = None
        self.removed: list[str] = []
        self.image_lookups = 0
        self.reachable = True
        self.closed = False
        self._ids = itertools.count(1)

    def ping(self) -> None:
        if not self.reachable:
            raise EngineUnavailable("fake://", "down")

    def close(self) -> None:
        self.closed = True

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        with self.lock:
            n = self.attempts[inv.shard_index] = self.attempts.get(inv.shard_index, 0) + 1
            cid = f"c{next(self._ids):04d}"
            self.containers_by_id[cid] = FakeContainer(inv, self.script(inv, n))
            self.created.append(inv)
        return cid

    def _get(self, container_id: str, operation: str) -> FakeContainer:
        c = self.containers_by_id.get(container_id)
        if c is None:  # as DockerEngine says it: a start fails, a wait loses the container
            if operation == "start":
                raise StartFailed(container_id, "No such container", command_not_found=False)
            raise EngineLost(container_id, "the container vanished")
        return c

    def start(self, container_id: str) -> None:
        with self.lock:
            c = self._get(container_id, "start")
            c.state = "running"
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.started.append(c.inv.shard_index)
            self.events.append(("start", c.inv.run_id, c.inv.shard_index))
        self._write(c)
        if self.on_start is not None:
            self.on_start(c.inv)

    def _write(self, c: FakeContainer) -> None:
        """The outcome's files, into output mounts whose host folder exists (as docker
        would refuse a missing one; the runner-only tests mount none)."""
        files = fake_output(c.inv) if c.outcome.files is None else c.outcome.files
        sources = {m.name: Path(m.source) for m in c.inv.mounts if m.kind == "output"}
        for rel, data in files.items():
            output, _, path = rel.partition("/")
            if output not in sources:
                raise KeyError(f"Outcome.files names '{output}', not an output mount")
            if sources[output].is_dir():
                (sources[output] / path).parent.mkdir(parents=True, exist_ok=True)
                (sources[output] / path).write_bytes(data)

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        c = self._get(container_id, "wait for")
        if c.state == "running":
            self._hold(container_id, c, timeout_s)
            limit = c.outcome.seconds if timeout_s is None else min(timeout_s, c.outcome.seconds)
            stopped = c.stopped.wait(limit)
            if not stopped and timeout_s is not None and timeout_s < c.outcome.seconds:
                raise WaitTimeout(container_id, timeout_s=timeout_s)
            self._exit(c)
            if c.outcome.lost:
                raise EngineLost(container_id, "the fake engine went away")
        code = 143 if c.stopped.is_set() else c.outcome.exit_code
        return ExitStatus(exit_code=code, oom_killed=c.outcome.oom_killed)

    def _hold(self, container_id: str, c: FakeContainer, timeout_s: float | None) -> None:
        hold = c.outcome.hold
        waited = 0.0
        while hold is not None and not hold.is_set() and not c.stopped.is_set():
            if timeout_s is not None and waited >= timeout_s:
                raise WaitTimeout(container_id, timeout_s=timeout_s)
            hold.wait(0.005)
            waited += 0.005

    def _exit(self, c: FakeContainer) -> None:
        with self.lock:
            if c.state == "running":
                c.state = "exited"
                self.running -= 1
                self.events.append(("exit", c.inv.run_id, c.inv.shard_index))

    def attach(self, container_id: str) -> Generator[tuple[bytes | None, bytes | None]]:
        outcome = self.containers_by_id[container_id].outcome
        if outcome.output:
            yield outcome.output, None
        if outcome.errors:
            yield None, outcome.errors

    def stats(self, container_id: str) -> Stats | None:
        """The outcome's figures while the container runs; None once it has ended (as
        Docker's cgroup v1 goes with the container)."""
        c = self.containers_by_id.get(container_id)
        return c.outcome.stats if c is not None and c.state == "running" else None

    def stop(self, container_id: str, *, grace_s: float) -> None:
        c = self.containers_by_id.get(container_id)
        if c is not None:
            c.stopped.set()

    def remove(self, container_id: str) -> None:
        c = self.containers_by_id.pop(container_id, None)
        if c is not None:
            self._exit(c)
            self.removed.append(container_id)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return [
            ContainerInfo(cid, c.inv.name, dict(c.inv.labels), c.state)
            for cid, c in list(self.containers_by_id.items())
            if all(c.inv.labels.get(k) == v for k, v in labels.items())
        ]

    def places(self) -> EnginePlaces:
        return EnginePlaces(data_root=self.root, sockets=self.sockets)

    def identity(self) -> EngineIdentity:
        return self.ident

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self.image_lookups += 1
        return ImageInfo(id="sha256:" + "f" * 64, tags=[ref])

    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo:
        raise PullError(None, ref, "the fake engine pulls nothing", failure="rejected")

    def build(
        self,
        context: str,
        *,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        target: str | None,
        labels: Mapping[str, str],
        network: str | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        raise BuildError(None, tag, "the fake engine builds nothing", [])

    def tag(self, image: str, repo: str, tag: str) -> None:
        pass

    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str:
        raise PullError(
            None,
            f"{repo}:{tag}",
            "the fake engine pushes nothing",
            failure="rejected",
            operation="push",
        )

    def remove_image(self, ref: str) -> None:
        pass

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        return []

    def save_image(self, ref: str, dest: Path) -> int:
        dest.write_bytes(b"fake image " + ref.encode())
        return dest.stat().st_size

    def load_image(self, src: Path) -> list[str]:
        return ["sha256:" + "f" * 64]

    def run_interactive(
        self,
        inv: Invocation,
        *,
        secrets: Mapping[str, str],
        tty: bool,
        keep: bool,
        entrypoint: str | None = None,
        publish: Mapping[int, int] | None = None,
    ) -> int:
        raise EngineError("the fake engine has no terminal", operation="run", container=inv.name)


def no_engine() -> FakeEngine:
    """An engine factory for `App(engine_factory=...)` where no engine answers, as the real
    factory would find with no daemon (without docker-py's socket, which it leaks then)."""
    raise EngineUnavailable("unix:///nonexistent.sock", "no engine here")
