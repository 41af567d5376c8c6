"""Example tests run the real engine: skip without one, or fail in CI."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _needs_docker(docker_available: None) -> None:
    """Every example runs in containers (see docker_available in tests/conftest.py)."""
