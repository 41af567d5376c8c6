"""DockerEngine: the Engine protocol on the Docker API.

With dockererrors.py (the one error translation point, through which every request
goes), the only module that imports `docker`; the payload it sends is rendered,
without Docker, by payload.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env

from containerexec.engine import archive
from containerexec.engine.base import (
    ContainerInfo,
    EngineIdentity,
    ExitStatus,
    ImageInfo,
    LogStream,
    Progress,
    Stats,
)
from containerexec.engine.cgroups import Cgroup
from containerexec.engine.dockererrors import (
    Request,
    StreamError,
    call,
    call_unless_gone,
)
from containerexec.engine.payload import create_kwargs, decode_label, docker_run_command
from containerexec.errors import (
    BuildError,
    EngineError,
    ImageError,
    PullError,
)
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation

__all__ = ["DockerEngine", "engine_sockets"]

# Where the engine listens unless DOCKER_HOST says otherwise (/var/run is /run on most hosts).
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def engine_sockets(docker_host: str) -> tuple[str, ...]:
    """The sockets this engine listens on: the default ones and DOCKER_HOST's unix path."""
    given = (docker_host.removeprefix("unix://"),) if docker_host.startswith("unix://") else ()
    return (*DEFAULT_SOCKETS, *given)


class DockerEngine:
    """Engine on the Docker API (docker-py's low-level client); a context manager that closes it."""

    name = "docker"
    client = ("docker", "docker.io")  # the command-line client, and its Debian package

    def __init__(self, client: docker.APIClient) -> None:
        self.api = client
        self._places: EnginePlaces | None = None
        self._cgroups: dict[str, Cgroup | None] = {}  # by container ID; None: not found
        self._by_pid: bool | None = None  # whether its cgroups are found through the PID
        self._identity: EngineIdentity | None = None

    @classmethod
    def from_env(cls, *, pool_size: int = 64) -> DockerEngine:
        """Connect to DOCKER_HOST or the local socket; EngineUnavailable if none answers."""

        def connect() -> docker.APIClient:
            kwargs = kwargs_from_env()
            return docker.APIClient(version="auto", max_pool_size=pool_size, **kwargs)

        return cls(call(Request("connect"), connect))

    def close(self) -> None:
        """Close the pooled connections; the engine object is not to be used after."""
        self.api.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> None:
        """Check that the engine answers. Also how we wait for one that went away, so
        pooled connections are dropped first: after a restart each would fail once."""

        def ping() -> None:
            self.api.close()
            self.api.ping()

        call(Request("ping"), ping)

    def identity(self) -> EngineIdentity:
        if self._identity is None:
            found = call(Request("version"), self.api.version)
            self._identity = EngineIdentity(self.name, str(found.get("Version", "")))
        return self._identity

    def places(self) -> EnginePlaces:
        if self._places is None:
            info = call(Request("info"), self.api.info)
            root = info.get("DockerRootDir") if isinstance(info, dict) else None
            self._places = EnginePlaces(
                data_root=Path(root) if isinstance(root, str) and root else None,
                sockets=engine_sockets(os.environ.get("DOCKER_HOST", "")),
            )
        return self._places

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        kw = create_kwargs(inv, secrets=secrets)
        hc = dict(kw.pop("host_config"))
        hc["mounts"] = [
            docker.types.Mount(m["target"], m["source"], type="bind", read_only=m["read_only"])
            for m in hc["mounts"]
        ]
        hc["log_config"] = docker.types.LogConfig(**hc["log_config"])
        raw = self._adapt(inv, hc)
        req = Request("create", container=inv.name, image=inv.image, module=inv.module)

        def create() -> str:
            host_config = self.api.create_host_config(**hc)
            host_config.update(raw)
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

        return call(req, create)

    def _adapt(self, inv: Invocation, host_config: dict[str, Any]) -> dict[str, Any]:
        """What this engine changes in the host config arguments of `inv`, and the raw
        HostConfig fields it adds that docker-py would refuse (Docker: none)."""
        return {}

    def start(self, container_id: str) -> None:
        call(Request("start", container=container_id), lambda: self.api.start(container_id))

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        req = Request("wait for", container=container_id, timeout_s=timeout_s)
        result = call(req, lambda: self.api.wait(container_id, timeout=timeout_s))  # type: ignore[arg-type]
        if result.get("StatusCode") == 0 and not _message(result.get("Error")):
            # A command that exited 0 succeeded, whatever became of its children, so the
            # inspect (for OOMKilled) is spared: one round trip less per shard.
            return ExitStatus(exit_code=0, oom_killed=False)
        inspect = Request("inspect", container=container_id)
        state = call(inspect, lambda: self.api.inspect_container(container_id)["State"])
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

        def attach() -> Any:
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
            return docker.types.CancellableStream(frames, response)

        stream = call(Request("attach to", container=container_id), attach)
        return _Attached(stream, _raw_socket(stream))

    def stats(self, container_id: str) -> Stats | None:
        if container_id not in self._cgroups:
            if len(self._cgroups) > 1024:  # ended containers' entries: forget the oldest
                self._cgroups.pop(next(iter(self._cgroups)), None)
            self._cgroups[container_id] = self._cgroup(container_id)
        cgroup = self._cgroups.get(container_id)
        found = cgroup.read() if cgroup is not None else None
        if found is None:
            self._cgroups[container_id] = None  # gone with the container: no more lookups
        return found

    def _cgroup(self, container_id: str) -> Cgroup | None:
        """The container's cgroup on this host; None for an engine on another host."""
        host = os.environ.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            return None
        found = Cgroup.of_container(container_id)
        if found is not None:
            self._by_pid = False  # the known places hold this engine's: no inspect
            return found
        if self._by_pid is False:
            return None  # this container has ended already
        try:  # elsewhere (rootless Podman's user slice): through its first process
            state = call(
                Request("inspect", container=container_id),
                lambda: self.api.inspect_container(container_id)["State"],
            )
        except EngineError:
            return None
        pid = state.get("Pid") if isinstance(state, dict) else None
        found = Cgroup.of_pid(pid) if isinstance(pid, int) and pid > 0 else None
        # A PID of another PID namespace names some other process: its cgroup is not this one.
        if found is None or container_id not in str(found.v2 or found.v1):
            return None
        self._by_pid = True
        return found

    def stop(self, container_id: str, *, grace_s: float) -> None:
        req = Request("stop", container=container_id)
        call_unless_gone(req, lambda: self.api.stop(container_id, timeout=max(0, int(grace_s))))

    def remove(self, container_id: str) -> None:
        req = Request("remove", container=container_id)
        call_unless_gone(req, lambda: self.api.remove_container(container_id, force=True))

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        found = call(
            Request("list containers"), lambda: self.api.containers(all=True, filters=filters)
        )
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
        req = Request("inspect", image=ref)
        data = call_unless_gone(req, lambda: self.api.inspect_image(ref))  # type: ignore[no-untyped-call]
        return None if data is None else self._image_info(data)

    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo:
        repo, tag = _split_ref(ref)

        def pull() -> None:
            for event in self.api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise StreamError(str(event["error"]))
                if on_progress:
                    on_progress(event)

        call(Request("pull", image=ref), pull)
        info = self.inspect_image(ref)
        if info is None:
            raise PullError(
                None, ref, "pull finished but the image is not on the engine", failure="rejected"
            )
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
        network: str | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        lines: list[str] = []
        asked = self._build_options({"tag": tag, "labels": dict(labels), "network_mode": network})

        def build() -> None:
            stream = self.api.build(
                path=context,
                dockerfile=dockerfile,
                buildargs=dict(buildargs),
                target=target,
                **asked,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for event in stream:
                if "stream" in event:
                    for raw in str(event["stream"]).splitlines():
                        if not raw.strip():
                            continue  # the classic builder pads every step with empty lines
                        line = self._log_line(raw)
                        lines.append(line)
                        if on_log:
                            on_log(line)
                if "error" in event:
                    step = next((x for x in reversed(lines) if x.startswith("Step ")), None)
                    raise StreamError(str(event["error"]).strip(), step=step)

        call(Request("build", image=tag), build, log=lines)
        info = self.inspect_image(tag)
        if info is None:
            raise BuildError(None, tag, "build finished but no image was tagged", lines[-20:])
        return self._built(tag, info)

    def _build_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The build's tag, labels and network_mode as this engine is to be asked."""
        return options

    def _built(self, tag: str, info: ImageInfo) -> ImageInfo:
        """What this engine does with an image just built as `tag` (Docker: nothing)."""
        return info

    def _log_line(self, line: str) -> str:
        """A build log line as this engine's users read it (Docker: as it came)."""
        return line

    def tag(self, image: str, repo: str, tag: str) -> None:
        req = Request(f"tag as {repo}:{tag}", image=image)
        call(req, lambda: self.api.tag(image, repo, tag=tag, force=True))

    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str:
        def push() -> str:
            digest = ""
            for event in self.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise StreamError(str(event["error"]))
                aux = event.get("aux") or {}
                digest = aux.get("Digest", digest)
                if on_progress:
                    on_progress(event)
            return str(digest)

        return call(Request("push", image=f"{repo}:{tag}"), push)

    def remove_image(self, ref: str) -> None:
        call_unless_gone(
            Request("remove", image=ref), lambda: self.api.remove_image(ref, force=True)
        )

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
        client, package = self.client
        exe = shutil.which(client)
        if exe is None:
            raise EngineError(
                f"an interactive container needs the {client} command-line client, "
                f"and '{client}' is not on PATH; install it (apt-get install "
                f"{package}) or use --print and run the command elsewhere"
            )
        argv = docker_run_command(
            inv, name=inv.name, interactive=True, tty=tty, entrypoint=entrypoint, publish=publish
        )
        env = {**os.environ, **{n: secrets[n] for n in inv.secret_names if n in secrets}}
        try:
            cmd = [exe, *self._client_run(inv, argv[1:], env)]
            return subprocess.run(cmd, env=env, check=False).returncode
        finally:
            if not keep:
                self.remove(inv.name)

    def _client_run(self, inv: Invocation, argv: list[str], env: dict[str, str]) -> list[str]:
        """The client's arguments (`run ...`) for `inv`; `env` is the client's, to add to."""
        return argv

    def save_image(self, ref: str, dest: Path) -> int:
        if self.inspect_image(ref) is None:
            raise ImageError(None, ref, "not on this engine; pull or build it first")

        def save() -> int:
            size = 0
            with dest.open("wb") as f:
                for chunk in self.api.get_image(ref):
                    f.write(chunk)
                    size += len(chunk)
            return size

        return call(Request("save", image=ref), save)

    def load_image(self, src: Path) -> list[str]:
        # Loaded from a copy without RepoTags: `docker load` would move those tags here.
        copy = src.with_name(f".{src.name}.untagged")
        archive.untagged(src, copy)

        def load() -> list[str]:
            loaded: list[str] = []
            with copy.open("rb") as f:
                for event in self.api.load_image(f):  # type: ignore[no-untyped-call]
                    if "error" in event:
                        raise StreamError(str(event["error"]))
                    text = str(event.get("stream", "")).strip()
                    for prefix in ("Loaded image ID: ", "Loaded image: "):
                        if text.startswith(prefix):
                            loaded.append(text[len(prefix) :])
            return loaded

        try:
            return call(Request("load", image=str(src)), load)
        finally:
            copy.unlink(missing_ok=True)

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        found = call(Request("list images"), lambda: self.api.images(filters=filters))
        return [self._image_info({**i, "Config": {"Labels": i.get("Labels")}}) for i in found]

    def _image_info(self, data: dict[str, Any]) -> ImageInfo:
        """An image as the engine describes it (inspect, or a list entry with its labels
        moved under Config)."""
        return ImageInfo(
            id=data["Id"],
            repo_digests=data.get("RepoDigests") or [],
            tags=data.get("RepoTags") or [],
            labels={
                k: decode_label(v)
                for k, v in ((data.get("Config") or {}).get("Labels") or {}).items()
            },
            size=int(data.get("Size") or 0),
        )


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
