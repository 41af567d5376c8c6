"""Session fixtures: the engine under test, per-session labels and cleanup, images, the registry.

The engine tests run on Docker, or on Podman with CONTAINEREXEC_TEST_ENGINE=podman
(`make test ENGINE=podman`): `docker_client` is then docker-py on Podman's compatible
socket, and containerexec itself sees CONTAINEREXEC_ENGINE=podman in those tests.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.constants import MINIMUM_DOCKER_API_VERSION as MIN_API_VERSION
from docker.errors import APIError, DockerException, NotFound

# pytest puts this folder on sys.path (no __init__.py, the default "prepend" import mode).
from helpers import BASE_IMAGE, TEST_ENGINE, skip_or_fail
from registry import REGISTRY_BINARY, Registry
from slurm import SlurmCluster, slurm_problem

from containerexec.engine.podmanservice import service_socket

ROOT = Path(__file__).resolve().parent.parent
SESSION_LABEL = "containerexec.test-session"
DOCKER_DIRS = ("engine", "examples")
SESSION_ID = uuid.uuid4().hex
session_started_key = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[session_started_key] = time.time()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests under tests/engine and tests/examples `docker`; run the leak check last."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(tests_dir) and path.relative_to(tests_dir).parts[0] in DOCKER_DIRS:
            item.add_marker(pytest.mark.docker)
        if "registry" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.registry)
    # A stable sort keeps every other test in collection order.
    items.sort(key=lambda item: "test_zz_no_leaks" in item.nodeid)


def engine_client(timeout: int = 120, engine: str = TEST_ENGINE) -> docker.DockerClient:
    """docker-py on the engine under test: DOCKER_HOST's, or Podman's compatible socket."""
    if engine == "podman":
        socket = service_socket()
        return docker.DockerClient(base_url=f"unix://{socket}", version="1.41", timeout=timeout)
    # A fixed API version: "auto" would connect inside from_env, beyond the caller's closing().
    return docker.from_env(version=MIN_API_VERSION, timeout=timeout)


@functools.cache
def docker_problem(engine: str = TEST_ENGINE) -> str | None:
    """Why the engine under test cannot be used, or None when it answers a ping."""
    # docker-py leaks its socket when connecting to a missing unix socket fails
    # (transport/unixconn.py); collect it here rather than fail under filterwarnings=error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            with contextlib.closing(engine_client(5, engine)) as client:
                client.ping()
        except (DockerException, OSError) as exc:
            return (
                f"no {engine} engine answers ({exc}); start one with 'make engine ENGINE={engine}'"
            )
        finally:
            gc.collect()
    return None


@pytest.fixture(scope="session", autouse=True)
def _engine_for_the_session() -> Iterator[None]:
    """containerexec's default engine is the one under test, from the session's start: the
    module fixtures of engine tests run containerexec before any test's own fixtures."""
    before = os.environ.get("CONTAINEREXEC_ENGINE")
    os.environ["CONTAINEREXEC_ENGINE"] = TEST_ENGINE
    yield
    if before is None:
        os.environ.pop("CONTAINEREXEC_ENGINE", None)
    else:
        os.environ["CONTAINEREXEC_ENGINE"] = before


@pytest.fixture(autouse=True)
def _engine_under_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no engine named in the environment, whatever the session's is."""
    if request.node.get_closest_marker("docker") is None:
        monkeypatch.delenv("CONTAINEREXEC_ENGINE", raising=False)


@pytest.fixture(scope="session")
def docker_available() -> None:
    problem = docker_problem()
    if problem is not None:
        skip_or_fail(problem)


@pytest.fixture(scope="session")
def docker_client(docker_available: None) -> Iterator[docker.DockerClient]:
    with contextlib.closing(engine_client()) as client:
        yield client


@pytest.fixture(scope="session")
def test_session_label() -> dict[str, str]:
    """Put this label on everything a test creates; the session removes it all at the end."""
    return {SESSION_LABEL: SESSION_ID}


@pytest.fixture(scope="session")
def session_started_at(request: pytest.FixtureRequest) -> float:
    """time.time() when this pytest session started."""
    return request.config.stash[session_started_key]


@pytest.fixture(scope="session", autouse=True)
def _remove_session_objects() -> Iterator[None]:
    """At the end of the session, force-remove what carries this session's label."""
    yield
    if docker_problem() is not None:
        return
    selector: dict[str, Any] = {"label": f"{SESSION_LABEL}={SESSION_ID}"}
    with contextlib.closing(engine_client()) as client:
        for container in client.containers.list(all=True, filters=selector):
            remove_quietly(container.remove, force=True)
        for image in client.images.list(filters=selector):
            remove_quietly(client.images.remove, image.id, force=True)
        for network in client.networks.list(filters=selector):
            remove_quietly(network.remove)
        for volume in client.volumes.list(filters=selector):
            remove_quietly(volume.remove, force=True)


def remove_quietly(remove: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    try:
        remove(*args, **kwargs)
    except NotFound:
        pass
    except APIError as exc:  # e.g. an image another image still builds on
        print(f"cleanup: {exc}")


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """The local base image every example and test image is built FROM."""
    try:
        docker_client.images.get(BASE_IMAGE)
    except NotFound:
        pytest.fail(f"the base image {BASE_IMAGE} is missing: run 'make setup'", pytrace=False)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wordcount_image_context() -> Path:
    return ROOT / "images" / "wordcount"


@pytest.fixture(scope="session")
def registry(docker_available: None) -> Iterator[Registry]:
    """A reference registry on 127.0.0.1:<free port>; push `registry.address/repo:tag`."""
    if not os.access(REGISTRY_BINARY, os.X_OK):
        skip_or_fail(f"{REGISTRY_BINARY} is missing; run 'make registry-package'")
    with Registry() as running:
        yield running


@pytest.fixture(scope="session")
def slurm(docker_available: None) -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster on free ports; sbatch & co. find it through SLURM_CONF."""
    problem = slurm_problem()
    if problem is not None:
        skip_or_fail(problem)
    with SlurmCluster() as cluster:
        before = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            yield cluster
        finally:
            if before is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = before


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than the run store: outputs are copied, not renamed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.fail("mounting a tmpfs needs root (these tests run as root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
