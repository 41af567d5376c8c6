"""What many test files share: the base image, the CLI's path, polling, skip-or-fail, and
finding the containers a run (or any containerexec label) left on the engine, and how many
containers each job of a pipeline run created.

pytest puts this folder on sys.path (tests/ has no __init__.py): `from helpers import ...`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest

from containerexec.engine.docker import DockerEngine
from containerexec.engine.factory import make_engine
from containerexec.labels import LABEL_RUN

if TYPE_CHECKING:
    from containerexec.pipelines.record import PipelineResult
    from containerexec.store.tree import RunStore

# Every test image and example is built FROM it; scripts/ensure-base-image.sh makes it.
BASE_IMAGE = "containerexec/base:bookworm"
# The console script of this venv, so subprocesses run the code under test.
CONTAINEREXEC = str(Path(sys.executable).with_name("containerexec"))
REQUIRE_DOCKER = os.environ.get("CONTAINEREXEC_REQUIRE_DOCKER") == "1"
# The engine the engine tests run on: `make test ENGINE=podman` sets it. Unit tests
# never read it; engine tests see it as CONTAINEREXEC_ENGINE too (tests/conftest.py).
TEST_ENGINE = os.environ.get("CONTAINEREXEC_TEST_ENGINE") or "docker"
T = TypeVar("T")


def local_engine() -> DockerEngine:
    """containerexec's engine seam on the engine under test (PodmanEngine is a DockerEngine)."""
    engine = make_engine(TEST_ENGINE)
    assert isinstance(engine, DockerEngine)
    return engine


def direct_ulimits() -> list[Any] | None:
    """The ulimits of a container a test runs through docker-py directly: on Podman its
    defaults exceed what root may set here (PodmanEngine bounds its own the same way)."""
    if TEST_ENGINE != "podman":
        return None
    import docker.types

    return [docker.types.Ulimit(name=n, soft=1024, hard=1024) for n in ("nofile", "nproc")]


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where CONTAINEREXEC_REQUIRE_DOCKER=1."""
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} (CONTAINEREXEC_REQUIRE_DOCKER=1)", pytrace=False)
    pytest.skip(reason)


def wait_for(check: Callable[[], T], *, timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll `check` every 0.1 s until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def outputs_of(folder: Path) -> dict[str, str]:
    """Every file directly in `folder`, by name, with its text."""
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def files_under(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted relative paths."""
    return sorted(
        str(Path(d, f).relative_to(folder)) for d, _dirs, names in os.walk(folder) for f in names
    )


def labelled_containers(
    client: Any, label: str, value: str | None = None, *, running: bool = False
) -> list[dict[str, Any]]:
    """The engine's containers carrying `label` (set to `value`, if given), as `docker ps` rows.

    Only running ones if asked; otherwise stopped and created ones too.
    """
    filters: dict[str, Any] = {"label": label if value is None else f"{label}={value}"}
    if running:
        filters["status"] = "running"
    return list(client.api.containers(all=not running, filters=filters))


def run_containers(client: Any, run_id: str, *, running: bool = False) -> list[dict[str, Any]]:
    """The engine's containers labelled with this run (only running ones if asked)."""
    return labelled_containers(client, LABEL_RUN, run_id, running=running)


def remove_run_containers(client: Any, run_id: str) -> None:
    for c in run_containers(client, run_id):
        client.api.remove_container(c["Id"], force=True)


def job_containers(store: RunStore, result: PipelineResult) -> dict[str, int]:
    """Per job: how many containers its run created (a cached shard creates none)."""
    return {
        name: sum(len(s.attempts) for s in store.load_shards(job.run_id).values())
        for name, job in result.record.jobs.items()
        if job.run_id
    }
