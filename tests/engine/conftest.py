"""Engine tests need a real Docker engine: skip without one, or fail in CI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import local_engine

from containerexec.engine.docker import DockerEngine


@pytest.fixture(autouse=True)
def _needs_docker(docker_available: None) -> None:
    """Every test here uses the real engine (see docker_available in tests/conftest.py)."""


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    """containerexec's engine seam on the local engine; its connections closed afterwards."""
    eng = local_engine()
    yield eng
    eng.api.close()
