"""DockerEngine: the Engine protocol on the Docker API, and the one error translation point.

This is the only module that imports `docker`; the payload it sends is
rendered, without Docker, by payload.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env

from containerexec.engine.base import (
    ContainerInfo,
    EngineLost,
    ExitStatus,
    ImageInfo,
    LogStream,
    Progress,
    StartFailed,
    WaitTimeout,
)
from containerexec.engine.payload import create_kwargs, docker_run_command
from containerexec.errors import EngineError, EngineUnavailable, ImageError, PullError
from containerexec.model.invocation import Invocation

__all__ = ["DockerEngine"]


def default_socket() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def translate(exc: Exception, what: str) -> NoReturn:
    """The one place docker's exceptions become ours."""
    if isinstance(exc, docker.errors.ImageNotFound | docker.errors.NotFound):
        raise ImageError("-", what, f"not found: {_explain(exc)}") from exc
    if isinstance(exc, docker.errors.APIError):
        raise EngineError(f"{what}: the engine answered: {_explain(exc)}") from exc
    if isinstance(exc, requests.exceptions.ConnectionError | docker.errors.DockerException):
        raise EngineUnavailable(default_socket(), str(exc).split("(")[0].strip()) from exc
    raise EngineError(f"{what}: {exc}") from exc


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)


class DockerEngine:
    """Engine on the Docker API (docker-py's low-level client)."""

    def __init__(self, client: docker.APIClient) -> None:
        self.api = client

    @classmethod
    def from_env(cls, *, pool_size: int = 64) -> DockerEngine:
        """Connect to DOCKER_HOST or the local socket; EngineUnavailable if none answers."""
        try:
            kwargs = kwargs_from_env()
            client = docker.APIClient(version="auto", max_pool_size=pool_size, **kwargs)
        except Exception as exc:  # docker raises several kinds here; all mean "no engine"
            raise EngineUnavailable(default_socket(), _short(exc)) from None
        return cls(client)

    def ping(self) -> None:
        """Check that the engine answers. Also how we wait for one that went away, so
        pooled connections are dropped first: after a restart each would fail once."""
        try:
            self.api.close()
            self.api.ping()
        except Exception as exc:
            raise EngineUnavailable(default_socket(), _short(exc)) from None

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        kw = create_kwargs(inv, secrets=secrets)
        hc = dict(kw.pop("host_config"))
        hc["mounts"] = [
            docker.types.Mount(m["target"], m["source"], type="bind", read_only=m["read_only"])
            for m in hc["mounts"]
        ]
        hc["log_config"] = docker.types.LogConfig(**hc["log_config"])
        try:
            host_config = self.api.create_host_config(**hc)
            try:
                return str(self.api.create_container(host_config=host_config, **kw)["Id"])
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                # The name is this run's and shard's, and the run lock keeps other
                # executors off it: a container under it is one whose create answer
                # was lost (the engine went away mid-request). Replace it.
                self.api.remove_container(inv.name, force=True)
                return str(self.api.create_container(host_config=host_config, **kw)["Id"])
        except docker.errors.ImageNotFound as exc:
            raise ImageError(inv.module, inv.image, "not on this engine; pull it first") from exc
        except Exception as exc:
            translate(exc, f"create container {inv.name}")

    def start(self, container_id: str) -> None:
        try:
            self.api.start(container_id)
        except docker.errors.APIError as exc:
            text = _explain(exc)
            missing = "executable file not found" in text or "no such file or directory" in text
            raise StartFailed(text, command_not_found=missing) from exc
        except Exception as exc:
            translate(exc, f"start container {container_id[:12]}")

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        try:
            result = self.api.wait(container_id, timeout=timeout_s)  # type: ignore[arg-type]
        except requests.exceptions.ReadTimeout as exc:
            raise WaitTimeout(f"container {container_id[:12]} still running") from exc
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in str(exc).lower() and timeout_s is not None:
                raise WaitTimeout(f"container {container_id[:12]} still running") from exc
            raise EngineLost(f"lost the engine while waiting: {_short(exc)}") from exc
        except docker.errors.NotFound as exc:
            raise EngineLost(f"container {container_id[:12]} vanished") from exc
        except Exception as exc:
            translate(exc, f"wait for container {container_id[:12]}")
        if result.get("StatusCode") == 0 and not _message(result.get("Error")):
            # A command that exited 0 succeeded, whatever became of its children, so the
            # inspect (for OOMKilled) is spared: one round trip less per shard.
            return ExitStatus(exit_code=0, oom_killed=False)
        try:
            state = self.api.inspect_container(container_id)["State"]
        except Exception as exc:
            translate(exc, f"inspect container {container_id[:12]}")
        return ExitStatus(
            exit_code=int(result.get("StatusCode", state.get("ExitCode", -1))),
            oom_killed=bool(state.get("OOMKilled")),
            error=str(_message(result.get("Error")) or state.get("Error", "")),
        )

    def attach(self, container_id: str) -> LogStream:
        """(stdout, stderr) chunks until the container exits. Call before `start`.

        Attaching first (as `docker run` does) means no early output is missed and
        the stream ends when the container does; attaching to an exited container hangs.
        """
        try:
            # api.attach() as docker-py writes it, less its inspect of the container to
            # learn whether it has a TTY: ours never do, and that call cost one more
            # round trip per shard. (Its private helpers are not in the type stubs.)
            api: Any = self.api
            response = api._post(
                api._url("/containers/{0}/attach", container_id),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                params={"logs": 1, "stdout": 1, "stderr": 1, "stream": 1},
                stream=True,
            )
            frames = api._read_from_socket(response, True, False, demux=True)
            stream = docker.types.CancellableStream(frames, response)
        except Exception as exc:
            translate(exc, f"attach to container {container_id[:12]}")
        return _Attached(stream, _raw_socket(stream))

    def stop(self, container_id: str, *, grace_s: float) -> None:
        try:
            self.api.stop(container_id, timeout=max(0, int(grace_s)))
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            translate(exc, f"stop container {container_id[:12]}")

    def remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in _explain(exc):
                translate(exc, f"remove container {container_id[:12]}")
        except Exception as exc:
            translate(exc, f"remove container {container_id[:12]}")

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        try:
            found = self.api.containers(all=True, filters=filters)
        except Exception as exc:
            translate(exc, "list containers")
        return [
            ContainerInfo(
                id=c["Id"],
                name=(c.get("Names") or ["?"])[0].lstrip("/"),
                labels=c.get("Labels") or {},
                status=c.get("State", ""),
            )
            for c in found
        ]

    def inspect_image(self, ref: str) -> ImageInfo | None:
        try:
            data = self.api.inspect_image(ref)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):
                return None
            translate(exc, f"inspect image {ref}")
        except Exception as exc:
            translate(exc, f"inspect image {ref}")
        return _image_info(data)

    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo:
        repo, tag = _split_ref(ref)
        try:
            for event in self.api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise PullError("-", ref, str(event["error"]), transient=_transient(event))
                if on_progress:
                    on_progress(event)
        except PullError:
            raise
        except docker.errors.APIError as exc:
            raise PullError("-", ref, _explain(exc), transient=_transient_api(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailable(default_socket(), _short(exc)) from exc
        info = self.inspect_image(ref)
        if info is None:
            raise PullError("-", ref, "pull finished but the image is not on the engine")
        return info

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
    ) -> ImageInfo:
        from containerexec.errors import BuildError

        lines: list[str] = []
        try:
            stream = self.api.build(
                path=context,
                dockerfile=dockerfile,
                tag=tag,
                buildargs=dict(buildargs),
                target=target,
                labels=dict(labels),
                rm=True,
                forcerm=True,
                decode=True,
            )
            for event in stream:
                if "stream" in event:
                    for line in str(event["stream"]).splitlines():
                        if not line.strip():
                            continue  # the classic builder pads every step with empty lines
                        lines.append(line)
                        if on_log:
                            on_log(line)
                if "error" in event:
                    step = next((x for x in reversed(lines) if x.startswith("Step ")), "")
                    raise BuildError(
                        "-", tag, f"{step or 'build'}: {event['error']}".strip(), lines[-20:]
                    )
        except BuildError:
            raise
        except docker.errors.APIError as exc:
            raise BuildError("-", tag, _explain(exc), lines[-20:]) from exc
        except Exception as exc:
            translate(exc, f"build {tag}")
        info = self.inspect_image(tag)
        if info is None:
            raise BuildError("-", tag, "build finished but no image was tagged", lines[-20:])
        return info

    def tag(self, image: str, repo: str, tag: str) -> None:
        try:
            self.api.tag(image, repo, tag=tag, force=True)
        except Exception as exc:
            translate(exc, f"tag {image} as {repo}:{tag}")

    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str:
        digest = ""
        try:
            for event in self.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise PullError(
                        "-", f"{repo}:{tag}", str(event["error"]), transient=_transient(event)
                    )
                aux = event.get("aux") or {}
                digest = aux.get("Digest", digest)
                if on_progress:
                    on_progress(event)
        except PullError:
            raise
        except docker.errors.APIError as exc:
            raise PullError(
                "-", f"{repo}:{tag}", _explain(exc), transient=_transient_api(exc)
            ) from exc
        except Exception as exc:
            translate(exc, f"push {repo}:{tag}")
        return str(digest)

    def remove_image(self, ref: str) -> None:
        try:
            self.api.remove_image(ref, force=True)
        except docker.errors.ImageNotFound:
            pass
        except Exception as exc:
            translate(exc, f"remove image {ref}")

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
        """Run `inv` attached to this terminal through the docker CLI; returns its exit status.

        The docker client already handles a terminal well (raw mode, resizes, signals),
        so this is the one call that goes through it rather than the API. Secret
        values reach it through its environment, never its argv. The container is
        removed afterwards unless `keep`.
        """
        exe = shutil.which("docker")
        if exe is None:
            raise EngineError(
                "an interactive container needs the docker command-line client, "
                "and 'docker' is not on PATH; install it (apt-get install "
                "docker.io) or use --print and run the command elsewhere"
            )
        argv = docker_run_command(
            inv, name=inv.name, interactive=True, tty=tty, entrypoint=entrypoint, publish=publish
        )
        env = {**os.environ, **{n: secrets[n] for n in inv.secret_names if n in secrets}}
        try:
            return subprocess.run([exe, *argv[1:]], env=env, check=False).returncode
        finally:
            if not keep:
                self.remove(inv.name)

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        try:
            found = self.api.images(filters=filters)
        except Exception as exc:
            translate(exc, "list images")
        return [
            ImageInfo(
                id=i["Id"],
                repo_digests=i.get("RepoDigests") or [],
                tags=i.get("RepoTags") or [],
                labels=i.get("Labels") or {},
                size=int(i.get("Size") or 0),
            )
            for i in found
        ]


def _message(error: Any) -> str:
    return str(error.get("Message", "")) if isinstance(error, dict) else ""


def _raw_socket(stream: Any) -> Any:
    """The socket under an attach stream, taken while the response still holds it."""
    try:
        return stream._response.raw._fp.fp.raw._sock
    except AttributeError:
        return None


class _Attached:
    """An attach stream that can be closed whether or not it was ever read."""

    def __init__(self, stream: Any, sock: Any) -> None:
        self.stream = stream
        self.sock = sock

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        try:
            yield from self.stream
        except (requests.exceptions.ConnectionError, docker.errors.APIError):
            return  # the wait reports what happened; logs end where the engine went
        finally:
            self.close()

    def close(self) -> None:
        # docker-py leaves closing the attach socket to the caller, and once the
        # response has ended it can no longer find it (ResourceWarning): close it here.
        closers: list[Any] = [self.stream, getattr(self.stream, "_response", None), self.sock]
        for closer in closers:
            with contextlib.suppress(Exception):
                closer.close()


def _image_info(data: dict[str, Any]) -> ImageInfo:
    return ImageInfo(
        id=data["Id"],
        repo_digests=data.get("RepoDigests") or [],
        tags=data.get("RepoTags") or [],
        labels=(data.get("Config") or {}).get("Labels") or {},
        size=int(data.get("Size") or 0),
    )


def _split_ref(ref: str) -> tuple[str, str | None]:
    """'host:5000/a/b:tag' -> ('host:5000/a/b', 'tag'); digests stay whole in the tag slot."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


# Registry answers that another try cannot change. A name that does not resolve
# ("no such host") is a typo far more often than a passing DNS fault.
PERMANENT = (
    "manifest unknown",
    "unauthorized",
    "not found",
    "denied",
    "invalid reference",
    "does not exist locally",
    "no such host",
)


def _transient(event: Mapping[str, Any]) -> bool:
    text = str(event.get("error", "")).lower()
    return not any(p in text for p in PERMANENT)


def _transient_api(exc: docker.errors.APIError) -> bool:
    text = _explain(exc).lower()
    if any(p in text for p in PERMANENT):
        return False
    return (exc.status_code or 0) >= 500 or "connection refused" in text or "timeout" in text


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied"):
        if marker in text:
            return marker
    return text.split("\n")[0][:200] or type(exc).__name__
