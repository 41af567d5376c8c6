"""The one translation point of Docker's errors: every request DockerEngine makes goes
through `_call`, and `translate` turns docker's and requests' exceptions into ours, with
the facts of the request as fields; `registry_failure` is the one classifier of a
registry's answer.

With docker.py, the only modules that import `docker`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import docker.errors
import requests.exceptions

from containerexec.engine.base import EngineLost, StartFailed, WaitTimeout
from containerexec.engine.refs import registry_of
from containerexec.errors import (
    BuildError,
    EngineError,
    EngineUnavailable,
    ImageError,
    PullError,
    RegistryFailure,
)

__all__ = [
    "Request",
    "StreamError",
    "call",
    "call_unless_gone",
    "default_socket",
    "registry_failure",
    "translate",
]

T = TypeVar("T")


def default_socket() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@dataclass(frozen=True)
class Request:
    """One request to the engine and what it concerns: the facts its error will carry."""

    operation: str
    container: str | None = None
    image: str | None = None
    module: str | None = None
    timeout_s: float | None = None  # a wait's: its ReadTimeout is the container still running


class StreamError(Exception):
    """An `{"error": ...}` event in a pull, push or build stream (docker raises none)."""

    def __init__(self, answer: str, *, step: str | None = None) -> None:
        self.answer = answer
        self.step = step
        super().__init__(answer)


def translate(exc: Exception, req: Request, *, log: Sequence[str] = ()) -> EngineError:
    """The one place docker's and requests' exceptions become ours, facts as fields.

    `log` is the build log so far, for a build's error. The special cases are the
    ones whose meaning depends on the request: what "not found" or "timed out" means
    differs between a wait, a pull and a start.
    """
    status = exc.status_code if isinstance(exc, docker.errors.APIError) else None
    answer = _explain(exc)
    if req.operation in ("connect", "ping"):
        return EngineUnavailable(default_socket(), _short(exc), operation=req.operation)
    if req.operation == "build" and isinstance(exc, StreamError | docker.errors.APIError):
        step = exc.step if isinstance(exc, StreamError) else None
        return BuildError(req.module, req.image or "", answer, log[-20:], step=step)
    if req.operation in ("pull", "push") and isinstance(exc, StreamError | docker.errors.APIError):
        return PullError(
            req.module,
            req.image or "",
            answer,
            failure=registry_failure(answer, status_code=status),
            operation="push" if req.operation == "push" else "pull",
            login=f"docker login {registry_of(req.image or '')}",
        )
    if req.operation == "wait for" and req.container:
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return WaitTimeout(req.container, timeout_s=req.timeout_s)
        if isinstance(exc, requests.exceptions.ConnectionError):
            if "timed out" in str(exc).lower() and req.timeout_s is not None:
                return WaitTimeout(req.container, timeout_s=req.timeout_s)
            return EngineLost(req.container, _short(exc))
        if isinstance(exc, docker.errors.NotFound):
            return EngineLost(req.container, "the container vanished")
    if req.operation == "start" and req.container and isinstance(exc, docker.errors.APIError):
        missing = "executable file not found" in answer or "no such file or directory" in answer
        # runc's answer for a folder or a file without the x bit (without an init process;
        # with one, the init exits 126 instead).
        denied = "permission denied" in answer.lower() and "exec" in answer
        return StartFailed(
            req.container,
            answer,
            command_not_found=missing,
            cannot_exec=denied and not missing,
            status_code=status,
        )
    if isinstance(exc, docker.errors.ImageNotFound) and req.image:
        return ImageError(
            req.module,
            req.image,
            "not on this engine; pull it first",
            operation=req.operation,
            status_code=status,
        )
    if isinstance(exc, docker.errors.APIError):
        return EngineError(
            f"the engine answered: {answer}",
            operation=req.operation,
            container=req.container,
            image=req.image,
            status_code=status,
        )
    if isinstance(exc, requests.exceptions.ConnectionError | docker.errors.DockerException):
        return EngineUnavailable(default_socket(), _short(exc), operation=req.operation)
    return EngineError(answer, operation=req.operation, container=req.container, image=req.image)


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    if isinstance(exc, StreamError):
        return exc.answer
    return str(exc)


def call(req: Request, fn: Callable[[], T], *, log: Sequence[str] = ()) -> T:
    """fn(), its errors translated; every request to the engine goes through here."""
    try:
        return fn()
    except Exception as exc:  # translate decides; nothing from docker passes unchanged
        raise translate(exc, req, log=log) from exc


def call_unless_gone(req: Request, fn: Callable[[], T]) -> T | None:
    """fn(), or None where what `req` concerns is gone or going: the end state asked for."""
    try:
        return fn()
    except Exception as exc:
        if _gone(exc, req):
            return None
        raise translate(exc, req) from exc


def _gone(exc: Exception, req: Request) -> bool:
    if isinstance(exc, docker.errors.NotFound):
        return True
    if not isinstance(exc, docker.errors.APIError):
        return False
    # a removal already under way ends as "gone", and a malformed image reference
    # (400) names no image that could be here
    already = exc.status_code == 409 and "already in progress" in _explain(exc)
    return already or (req.image is not None and exc.status_code == 400)


# Registry answers that another try cannot change, in the order they are looked for.
# A name that does not resolve ("no such host") is a typo far more often than a
# passing DNS fault.
_PERMANENT: tuple[tuple[RegistryFailure, tuple[str, ...]], ...] = (
    ("not-found", ("manifest unknown", "not found", "does not exist locally")),
    ("denied", ("unauthorized", "denied")),
    ("bad-name", ("invalid reference", "no such host")),
)
# Answers of a registry that cannot be reached (yet): another try may find it up.
_UNREACHABLE = ("connection refused", "timeout", "timed out", "dial tcp", "unreachable", "eof")


def registry_failure(answer: str, *, status_code: int | None = None) -> RegistryFailure:
    """What a registry's failed answer to a pull or push means; the one classifier.

    `status_code` is the engine's HTTP status when the engine refused the request
    itself, None for an error event in its stream. A stream error or a 5xx that is
    none of the known answers counts as transient ("unavailable"); any other 4xx
    as permanent ("rejected").
    """
    text = answer.lower()
    for failure, markers in _PERMANENT:
        if any(m in text for m in markers):
            return failure
    if any(m in text for m in _UNREACHABLE):
        return "unreachable"
    if status_code is None or status_code >= 500:
        return "unavailable"
    return "rejected"


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied"):
        if marker in text:
            return marker
    return text.split("\n")[0][:200] or type(exc).__name__
