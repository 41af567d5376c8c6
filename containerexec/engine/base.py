"""The Engine protocol: what containerexec needs from a container engine, and what it returns.

Everything above the engine talks to this protocol; engine/docker.py is its one
implementation on the Docker API and the only module that imports `docker`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from containerexec.errors import EngineError
from containerexec.model.invocation import Invocation


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    oom_killed: bool
    error: str = ""


@dataclass(frozen=True)
class ImageInfo:
    id: str
    repo_digests: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    size: int = 0


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: str


class WaitTimeout(EngineError):
    """The container was still running when the wait's timeout passed."""


class EngineLost(EngineError):
    """The engine stopped answering while a container ran."""


class StartFailed(EngineError):
    """The engine could not start the container's command."""

    def __init__(self, message: str, *, command_not_found: bool) -> None:
        self.command_not_found = command_not_found
        super().__init__(message)


Progress = Callable[[dict[str, Any]], None]


class LogStream(Protocol):
    """(stdout, stderr) chunks of a container's output; close() frees it unread."""

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]: ...
    def close(self) -> None: ...


class Engine(Protocol):
    """What containerexec needs from a container engine. Methods raise EngineError."""

    def ping(self) -> None: ...
    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str: ...
    def start(self, container_id: str) -> None: ...
    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus: ...
    def attach(self, container_id: str) -> LogStream: ...
    def stop(self, container_id: str, *, grace_s: float) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]: ...
    def inspect_image(self, ref: str) -> ImageInfo | None: ...
    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo: ...
    def build(
        self,
        context: str,
        *,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        target: str | None,
        labels: Mapping[str, str],
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo: ...
    def tag(self, image: str, repo: str, tag: str) -> None: ...
    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str: ...
    def remove_image(self, ref: str) -> None: ...
    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]: ...
    def run_interactive(
        self,
        inv: Invocation,
        *,
        secrets: Mapping[str, str],
        tty: bool,
        keep: bool,
        entrypoint: str | None = None,
        publish: Mapping[int, int] | None = None,
    ) -> int: ...
