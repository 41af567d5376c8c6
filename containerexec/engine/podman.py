"""PodmanEngine: the Engine protocol on Podman's Docker-compatible API.

It is DockerEngine (the same SDK, requests and error translation) on Podman's socket,
with what Podman 4.3 does differently put right here, so nothing above the engine
knows which one runs:

- its default ulimits exceed what root may set in many containers: ours are bounded;
- rootless, `keep-id` maps the caller to themself, so outputs belong to them;
- a start failure arrives from attach (which creates the container's process): it
  is kept and raised by `start`, as Docker does;
- with catatonit as init a missing command exits 1, and an OOM kill shows as exit
  137 with OOMKilled false: `wait` restores 127/126 and `oom_killed`;
- its build API runs RUN steps on the host's network when asked for none: it is
  asked in buildah's own terms;
- its builder fails on a label value with `${{` in it: such values are sent encoded
  (engine/payload.py `encode_label`);
- every local image has a `localhost/` repo digest no registry holds, and a
  `localhost/` tag prefix: neither is reported;
- a loopback registry is pushed to and pulled from over plain HTTP, as Docker does,
  and a push's digest, which Podman's stream lacks, is asked from the registry.
"""

from __future__ import annotations

import ipaddress
import json
import resource
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from containerexec.engine.base import EngineIdentity, ExitStatus, ImageInfo, Progress, StartFailed
from containerexec.engine.docker import DockerEngine
from containerexec.engine.dockererrors import Request, StreamError, call, call_unless_gone
from containerexec.engine.payload import decode_label, encode_label
from containerexec.engine.podmanservice import ensure_service, service_socket
from containerexec.engine.refs import registry_of
from containerexec.errors import EngineError, EngineUnavailable, PullError
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation

__all__ = ["PodmanEngine"]

LIBPOD = "/v4.0.0/libpod"
# The name that marks an image built here under a registry's name (see `build`).
MADE_HERE = "localhost/containerexec-made-here"
# catatonit's words when it cannot exec the command (stderr, then it exits 1).
EXEC_FAILED = "failed to exec pid1: "
# What the resources of a spec need of the host's cgroup controllers.
CONTROLLERS = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


class PodmanEngine(DockerEngine):
    """Engine on Podman's Docker-compatible API; rootful or rootless, as the service runs."""

    name = "podman"
    client = ("podman", "podman")

    def __init__(self, client: docker.APIClient, socket: Path) -> None:
        super().__init__(client)
        self.socket = socket
        self._host: dict[str, Any] | None = None
        self._deferred: dict[str, str] = {}  # container -> the start error its attach got
        self._stopped: set[str] = set()  # containers we stopped: their 137 is no OOM

    @classmethod
    def from_env(cls, *, pool_size: int = 64) -> PodmanEngine:
        """Connect to this user's Podman service, starting one when none answers."""
        socket = service_socket()
        ensure_service(socket)
        # A fixed API version: "auto" would cost a request, and Podman serves 1.41.
        client = docker.APIClient(
            base_url=f"unix://{socket}", version="1.41", max_pool_size=pool_size
        )
        return cls(client, socket)

    def ping(self) -> None:
        try:
            super().ping()
        except EngineUnavailable as exc:
            raise EngineUnavailable(
                str(self.socket),
                exc.reason,
                operation="ping",
                engine="Podman",
                advice="start it ('make engine ENGINE=podman' in the containerexec checkout, "
                f"or 'podman system service --time=0 unix://{self.socket} &'), or set "
                "CONTAINEREXEC_PODMAN_HOST to where it listens",
            ) from exc

    def host(self) -> dict[str, Any]:
        """Podman's own `info` (libpod): version, rootless, cgroups, storage; asked once."""
        if self._host is None:
            api: Any = self.api
            url = api.base_url + LIBPOD + "/info"
            self._host = call(Request("info"), lambda: api._result(api._get(url), True))
        return self._host

    @property
    def rootless(self) -> bool:
        return bool(self.host().get("host", {}).get("security", {}).get("rootless"))

    def cannot_limit(self) -> tuple[str, ...]:
        """The resources this service cannot limit: rootless, those whose cgroup
        controller is not delegated to the user (all of them on cgroup v1)."""
        host = self.host().get("host", {})
        if not self.rootless:
            return ()
        have = set(host.get("cgroupControllers") or ())
        if host.get("cgroupVersion") != "v2":
            have = set()
        return tuple(r for r, c in CONTROLLERS.items() if c not in have)

    def identity(self) -> EngineIdentity:
        if self._identity is None:
            version = str(self.host().get("version", {}).get("Version", ""))
            self._identity = EngineIdentity(
                "podman", version, rootless=self.rootless, cannot_limit=self.cannot_limit()
            )
        return self._identity

    def places(self) -> EnginePlaces:
        if self._places is None:
            root = self.host().get("store", {}).get("graphRoot")
            self._places = EnginePlaces(
                data_root=Path(root) if isinstance(root, str) and root else None,
                sockets=(str(self.socket),),
            )
        return self._places

    def _adapt(self, inv: Invocation, host_config: dict[str, Any]) -> dict[str, Any]:
        host_config["ulimits"] = [
            docker.types.Ulimit(name=name, soft=soft, hard=hard)
            for name, (soft, hard) in self.ulimits(inv).items()
        ]
        if not self.rootless:
            return {}
        if "pids" in self.cannot_limit():
            # No pids controller: the process limit of the container's own user
            # namespace stands in for it (ulimits).
            host_config.pop("pids_limit", None)
        # The caller is themself in the container, so what it writes is theirs;
        # docker-py only knows "host" here, so the field is added as is.
        return {"UsernsMode": "keep-id"}

    def ulimits(self, inv: Invocation) -> dict[str, tuple[int, int]]:
        """Podman's defaults (1048576) exceed what root may raise to in many hosts, and
        the container would not start: no more than this process may have."""
        _, files = resource.getrlimit(resource.RLIMIT_NOFILE)
        _, procs = resource.getrlimit(resource.RLIMIT_NPROC)
        files = min(_finite(files), 1 << 20)
        procs = min(_finite(procs), _pid_max())
        if self.rootless and "pids" in self.cannot_limit():
            procs = min(procs, inv.limits.pids)
        return {"nofile": (min(1024, files), files), "nproc": (procs, procs)}

    def attach(self, container_id: str) -> Any:
        try:
            return super().attach(container_id)
        except EngineError as exc:
            # Podman creates the container's process when attached to: a command that
            # cannot start fails here. `start` reports it, as Docker's start does.
            if exc.status_code != 409 or "attach" not in exc.message:
                raise
            self._deferred[container_id] = exc.message
            return _Empty()

    def start(self, container_id: str) -> None:
        answer = self._deferred.pop(container_id, None)
        if answer is None:
            super().start(container_id)
            return
        missing = "executable file not found" in answer or "no such file or directory" in answer
        raise StartFailed(container_id, answer, command_not_found=missing, status_code=409)

    def stop(self, container_id: str, *, grace_s: float) -> None:
        self._stopped.add(container_id)
        super().stop(container_id, grace_s=grace_s)

    def remove(self, container_id: str) -> None:
        for attempt in range(3):
            try:
                super().remove(container_id)
                break
            except EngineError as exc:
                # Podman refuses a forced removal that races the container's own exit
                # ("could not be stopped ... state improper"); by the next try it is gone.
                if "state improper" not in exc.message or attempt == 2:
                    raise
                time.sleep(0.1)
        self._stopped.discard(container_id)
        self._deferred.pop(container_id, None)

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        status = super().wait(container_id, timeout_s=timeout_s)
        if status.exit_code == 1 and not status.oom_killed:
            return self._exec_failure(container_id, status)
        if status.exit_code == 137 and not status.oom_killed:
            if container_id not in self._stopped and self._memory_limited(container_id):
                # Podman does not see the kernel's OOM kill through cgroup v1; a SIGKILL
                # that we did not send, to a memory-limited container, is the OOM killer.
                return ExitStatus(137, oom_killed=True, error=status.error)
        return status

    def _exec_failure(self, container_id: str, status: ExitStatus) -> ExitStatus:
        req = Request("read the log of", container=container_id)
        tail = call(req, lambda: self.api.logs(container_id, stdout=False, tail=5))
        for line in bytes(tail).decode(errors="replace").splitlines():
            if EXEC_FAILED in line:
                why = line.split(EXEC_FAILED, 1)[1].strip()
                code = 127 if "No such file" in why else 126
                return ExitStatus(code, oom_killed=False, error=f"cannot run the command: {why}")
        return status

    def _memory_limited(self, container_id: str) -> bool:
        req = Request("inspect", container=container_id)
        info = call(req, lambda: self.api.inspect_container(container_id))
        return int((info.get("HostConfig") or {}).get("Memory") or 0) > 0

    def inspect_image(self, ref: str) -> ImageInfo | None:
        # Podman's own inspect: it says which manifest digest the image was made with.
        api: Any = self.api
        url = f"{api.base_url}{LIBPOD}/images/{ref}/json"
        req = Request("inspect", image=ref)
        data = call_unless_gone(req, lambda: api._result(api._get(url), True))
        info = None if data is None else self._image_info(data)
        if info is not None and "@" in ref and not ref.startswith("sha256:"):
            # Podman finds `repo@digest` by the digest alone, whatever names the image
            # has left; Docker only while that repo's name still holds it.
            if familiar(ref) not in info.repo_digests:
                return None
        return info

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        api: Any = self.api
        filters = json.dumps({"label": [f"{k}={v}" if v else k for k, v in labels.items()]})
        url = f"{api.base_url}{LIBPOD}/images/json"
        found = call(
            Request("list images"),
            lambda: api._result(api._get(url, params={"filters": filters}), True),
        )
        return [self._image_info(i) for i in found]

    def _image_info(self, data: dict[str, Any]) -> ImageInfo:
        """An image as libpod describes it, in Docker's terms. Podman pairs every name
        with every manifest digest the image has; an image made here (a `localhost/`
        name) was made with a digest of its own (`Digest`) that no registry holds."""
        made_here = any(t.startswith("localhost/") for t in data.get("RepoTags") or [])
        own = data.get("Digest") if made_here else None
        image_id = str(data["Id"])
        labels = data.get("Labels") or (data.get("Config") or {}).get("Labels") or {}
        return ImageInfo(
            id=image_id if image_id.startswith("sha256:") else f"sha256:{image_id}",
            repo_digests=[
                familiar(d)
                for d in data.get("RepoDigests") or []
                if d.rsplit("@", 1)[-1] != own and not d.startswith("localhost/")
            ],
            tags=[
                familiar(t)
                for t in data.get("RepoTags") or []
                if not t.startswith(MADE_HERE + ":") and t != "<none>:<none>"
            ],
            labels={k: decode_label(v) for k, v in labels.items()},
            size=int(data.get("Size") or 0),
        )

    def _log_line(self, line: str) -> str:
        # buildah's "[1/2] STEP 2/4: RUN x" as Docker's "Step 2/4 : RUN x", which
        # BuildError and the build display look for.
        if line.startswith("[") and "] STEP " in line:
            line = line.split("] ", 1)[1]
        head, sep, rest = line.partition(": ")
        if sep and head.startswith("STEP ") and head[5:].replace("/", "").isdigit():
            return f"Step {head[5:]} : {rest}"
        return line

    def _build_options(self, options: dict[str, Any]) -> dict[str, Any]:
        network = options["network_mode"]
        return {
            "tag": local_name(options["tag"]),
            "labels": {k: encode_label(v) for k, v in options["labels"].items()},
            # Podman 4.3 ignores "none" here and runs RUN steps on the host's network;
            # "1" is buildah's NetworkDisabled, which it honours.
            "network_mode": "1" if network == "none" else network,
        }

    def _built(self, tag: str, info: ImageInfo) -> ImageInfo:
        if local_name(tag) != tag:
            return info
        # Built under a registry's name: the digest Podman made for it would pass for that
        # registry's. A `localhost/` name of its own marks it as made here (_image_info).
        super().tag(info.id, MADE_HERE, info.id.removeprefix("sha256:")[:16])
        return self.inspect_image(info.id) or info

    def tag(self, image: str, repo: str, tag: str) -> None:
        super().tag(image, local_name(repo), tag)

    def remove_image(self, ref: str) -> None:
        info = self.inspect_image(ref)
        super().remove_image(ref)
        if info is not None and ref in info.tags and len(info.tags) == 1:
            # The mark of an image made here is no reason to keep it.
            super().remove_image(f"{MADE_HERE}:{info.id.removeprefix('sha256:')[:16]}")

    def pull(self, ref: str, *, on_progress: Progress | None = None) -> ImageInfo:
        params = {"reference": ref, "quiet": False, **_tls(ref)}
        progress = _DockerEvents("pull", ref, on_progress) if on_progress else None
        self._libpod_stream(Request("pull", image=ref), "/images/pull", params, progress)
        info = self.inspect_image(ref)
        if info is None:
            raise PullError(
                None, ref, "pull finished but the image is not on the engine", failure="rejected"
            )
        return info

    def push(self, repo: str, tag: str, *, on_progress: Progress | None = None) -> str:
        ref = f"{repo}:{tag}"
        params = {"destination": ref, "quiet": False, **_tls(ref)}
        progress = _DockerEvents("push", ref, on_progress) if on_progress else None
        self._libpod_stream(Request("push", image=ref), f"/images/{ref}/push", params, progress)
        # Podman's push stream names no digest: the registry's answer is the truth.
        digest = call(Request("push", image=ref), lambda: _manifest_digest(repo, tag))
        if digest:
            # Nor does Podman note the digest on the image, as Docker does; pulling it
            # back (its layers are here: only the manifest moves) makes it a repo digest.
            pulled = f"{repo}@{digest}"
            params = {"reference": pulled, "quiet": True, **_tls(pulled)}
            self._libpod_stream(Request("pull", image=pulled), "/images/pull", params, None)
        return digest

    def _libpod_stream(
        self, req: Request, path: str, params: dict[str, Any], on_progress: Progress | None
    ) -> None:
        api: Any = self.api

        def run() -> None:
            response = api._post(api.base_url + LIBPOD + path, params=params, stream=True)
            api._raise_for_status(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue  # a push answers with blank lines between its JSON events
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"stream": line.decode(errors="replace")}
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise StreamError(str(event["error"]))
                if on_progress:
                    on_progress(event)

        call(req, run)

    def _client_run(self, inv: Invocation, argv: list[str], env: dict[str, str]) -> list[str]:
        # The podman client, through this engine's service, with what `create` adds.
        env["CONTAINER_HOST"] = f"unix://{self.socket}"
        extra = [f"--ulimit={n}={s}:{h}" for n, (s, h) in self.ulimits(inv).items()]
        extra += ["--userns=keep-id"] if self.rootless else []
        return ["--remote", argv[0], *extra, *argv[1:]]


def familiar(name: str) -> str:
    """A name as Docker writes it: no `localhost/`, `docker.io/` or `library/` in front."""
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def local_name(name: str) -> str:
    """An image name with no registry in it, kept local: `localhost/NAME`. Podman's Docker
    API would name it `docker.io/NAME`, and its digest would then pass for Docker Hub's."""
    first = name.split("/", 1)[0]
    qualified = "/" in name and ("." in first or ":" in first or first == "localhost")
    return name if qualified or name.startswith("sha256:") else f"localhost/{name}"


class _DockerEvents:
    """Podman's pull and push messages as the Docker events the progress display reads."""

    def __init__(self, verb: str, ref: str, forward: Progress) -> None:
        self.forward = forward
        self.done = "Pull complete" if verb == "pull" else "Pushed"
        repo, sep, tag = ref.rpartition("@") if "@" in ref else ref.rpartition(":")
        if not sep or "/" in tag:  # no tag: the colon was a registry's port
            repo, tag = ref, "latest"
        pushing = f"The push refers to repository [{repo}]"
        forward({"status": f"Pulling from {repo}" if verb == "pull" else pushing, "id": tag})

    def __call__(self, event: dict[str, Any]) -> None:
        text = str(event.get("stream", "")).strip()
        if text.startswith("Copying blob "):
            blob = text.removeprefix("Copying blob ").split()[0].removeprefix("sha256:")
            self.forward({"status": self.done, "id": blob[:12], "progressDetail": {}})
        elif "images" in event or text.startswith("Writing manifest"):
            self.forward({"status": "Status: done"})


class _Empty:
    """The output of a container that never started."""

    def __iter__(self) -> Any:
        return iter(())

    def close(self) -> None:
        pass


def _finite(limit: int) -> int:
    return (1 << 30) if limit == resource.RLIM_INFINITY else limit


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


def _loopback(ref: str) -> bool:
    host = registry_of(ref).rsplit(":", 1)[0] if ":" in registry_of(ref) else registry_of(ref)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(ref: str) -> dict[str, bool]:
    """Docker talks plain HTTP to a registry on 127.0.0.0/8; Podman must be told to."""
    return {"tlsVerify": False} if _loopback(ref) else {}


def _manifest_digest(repo: str, tag: str) -> str:
    """The digest a registry reports for repo:tag (its Docker-Content-Digest header)."""
    registry = registry_of(repo)
    path = repo.split("/", 1)[1] if repo.startswith(registry + "/") else repo
    scheme = "http" if _loopback(repo) else "https"
    request = urllib.request.Request(
        f"{scheme}://{registry}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(answer.headers.get("Docker-Content-Digest", ""))
    except OSError as exc:
        raise StreamError(f"the registry did not say the pushed digest: {exc}") from exc
