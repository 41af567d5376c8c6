"""The Engine protocol: what containerexec needs from a container engine, and what it returns.

Everything above the engine talks to this protocol; engine/docker.py implements it on
the Docker API, and engine/podman.py on Podman's Docker-compatible API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from containerexec.errors import EngineError
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    oom_killed: bool
    error: str = ""


@dataclass(frozen=True)
class Stats:
    """A running container's resource figures so far; None where this host cannot give one.

    `memory_peak_bytes` is the kernel's own peak (None where it keeps none: sample
    `memory_bytes`, the usage now); `cpu_seconds`, `read_bytes` and `write_bytes` only grow.
    """

    memory_peak_bytes: int | None = None
    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None


@dataclass(frozen=True)
class ImageInfo:
    id: str
    repo_digests: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True)
class EngineIdentity:
    """Which engine ran a run, as its records say: "docker" or "podman", its version."""

    name: str
    version: str
    rootless: bool = False
    # Resources ("memory", "cpus", "pids") this engine cannot limit on this host.
    cannot_limit: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: str


class WaitTimeout(EngineError):
    """The container was still running when the wait's timeout passed."""

    def __init__(self, container: str, *, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        after = f" after {timeout_s:g} s" if timeout_s is not None else ""
        super().__init__(f"still running{after}", operation="wait for", container=container)


class EngineLost(EngineError):
    """The engine stopped answering, or lost the container, while it ran."""

    def __init__(self, container: str, reason: str, *, operation: str = "wait for") -> None:
        self.reason = reason
        super().__init__(f"lost the engine: {reason}", operation=operation, container=container)


class StartFailed(EngineError):
    """The engine could not start the container's command.

    `command_not_found` says the command itself is missing from the image (the
    shard fails as exit 127 would, without retries); `cannot_exec` that it is there
    but cannot be executed (a folder, no x bit: as exit 126); else it is the engine's fault.
    """

    def __init__(
        self,
        container: str,
        answer: str,
        *,
        command_not_found: bool,
        cannot_exec: bool = False,
        status_code: int | None = None,
    ) -> None:
        self.command_not_found = command_not_found
        self.cannot_exec = cannot_exec
        super().__init__(answer, operation="start", container=container, status_code=status_code)


Progress = Callable[[dict[str, Any]], None]


class LogStream(Protocol):
    """(stdout, stderr) chunks of a container's output; close() frees it unread."""

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]: ...
    def close(self) -> None: ...


class Engine(Protocol):
    """What containerexec needs from a container engine.

    Every method raises EngineError (or a subclass) and nothing else; in particular
    EngineUnavailable when no engine answers. A container is named by the ID that
    `create` returned; an image by any reference the engine resolves (tag, digest, ID).
    """

    def ping(self) -> None:
        """Return once the engine answers.

        Raises:
            EngineUnavailable: it does not.
        """
        ...

    def close(self) -> None:
        """Release the engine's connections; the engine is not used after."""
        ...

    def identity(self) -> EngineIdentity:
        """The engine's name and version, asked once per engine object.

        Raises:
            EngineUnavailable: no engine answers.
        """
        ...

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        """Create (not start) the container of `inv`, named `inv.name`; return its ID.

        `secrets` holds the values of `inv.secret_names`; they reach the container's
        environment only. A container already under that name is replaced: the name is
        one run's and shard's, so it can only be an earlier try whose answer was lost.

        Raises:
            ImageError: `inv.image` is not on this engine (its `module` is `inv.module`).
            EngineError: the engine refused the container.
        """
        ...

    def start(self, container_id: str) -> None:
        """Start a created container.

        Raises:
            StartFailed: the command could not start; `command_not_found` says why.
        """
        ...

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        """Block until the container exits (at most `timeout_s`); return how it ended.

        Raises:
            WaitTimeout: it still runs after `timeout_s`; it is left running.
            EngineLost: the engine went away, or the container vanished, meanwhile.
        """
        ...

    def attach(self, container_id: str) -> LogStream:
        """The container's output from its first byte to its end. Call before `start`.

        The stream ends quietly if the engine goes away; `wait` reports that.
        """
        ...

    def stats(self, container_id: str) -> Stats | None:
        """The running container's resource figures so far, read from its cgroup on this host.

        Cheap (a few small files; at most one request, the first time), so the runner
        samples it while the container runs: the cgroup may go with the container's end,
        before `wait` returns. Raises nothing.

        Returns:
            None when nothing can be read: the container is not running (or gone), the
            engine is on another host, or its cgroups are where this engine does not look.
        """
        ...

    def stop(self, container_id: str, *, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`. A container already gone is no error."""
        ...

    def remove(self, container_id: str) -> None:
        """Remove the container, running or not. One already gone (or going) is no error."""
        ...

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container, running or not, carrying all `labels` (an empty value: any)."""
        ...

    def inspect_image(self, ref: str) -> ImageInfo | None:
        """The image `ref` on this engine; None if it is not here or `ref` is malformed."""
        ...

    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo:
        """Pull `ref` (tag or digest) and return the image pulled, once.

        `on_progress` gets the engine's progress events. Retrying is the caller's call:
        environment/images.py retries when the error says `transient`.

        Raises:
            PullError: the registry's answer, with `failure` saying what it means;
                its `module` is None.
        """
        ...

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
        """Build the folder `context` as `tag` and return the image; `on_log` gets each line.

        `network` is the network of its RUN steps: "none", "host", or None for the
        engine's default.

        Raises:
            BuildError: with the failing `step` and the last 20 lines of the log;
                its `module` is None.
        """
        ...

    def tag(self, image: str, repo: str, tag: str) -> None:
        """Tag `image` as repo:tag, moving the tag if another image has it.

        Raises:
            ImageError: `image` is not on this engine.
        """
        ...

    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str:
        """Push repo:tag once; return the manifest digest the registry reported ("" if none).

        Raises:
            PullError: as `pull`, with `operation` "push".
        """
        ...

    def remove_image(self, ref: str) -> None:
        """Remove the name `ref` (the image with its last name). Not there is no error."""
        ...

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        """Every image carrying all `labels` (an empty value: any)."""
        ...

    def save_image(self, ref: str, dest: Path) -> int:
        """Write the image `ref` as a `docker save` tar to the file `dest`; return its size.

        Raises:
            ImageError: `ref` is not on this engine.
        """
        ...

    def load_image(self, src: Path) -> list[str]:
        """Load a `docker save` tar from `src` by ID only; return the IDs the engine says
        it loaded. The tar's own names (RepoTags, `repositories`) are dropped before the
        engine sees it (engine/archive.py `untagged`), so no existing tag moves; the caller
        checks the ID first (`archive.image_id`). A copy is written beside `src` meanwhile.

        Raises:
            UntrustedInput: `src` is not a readable image archive.
            EngineError: the engine refused the tar (not an image archive, no space).
        """
        ...

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
        """Run `inv` attached to this terminal and return its exit status.

        `entrypoint` replaces the image's (a shell, say), `publish` maps container
        ports to 127.0.0.1 ports, and the container is removed after unless `keep`.

        Raises:
            EngineError: the engine cannot run interactive containers here.
        """
        ...

    def places(self) -> EnginePlaces:
        """What of this host belongs to the engine, which no mount may reach: the folder
        where it keeps its images, containers and volumes (Docker's DockerRootDir; None
        when the engine does not say) and the sockets it listens on. Asked once per
        engine object.

        Raises:
            EngineUnavailable: no engine answers.
        """
        ...
