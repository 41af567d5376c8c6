"""The engine contract (tests/engine_contract.py) on the engine under test (Docker, or Podman
with CONTAINEREXEC_TEST_ENGINE=podman); the same tests run on the fake in
tests/unit/test_engine_contract.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_contract import (  # noqa: F401
    test_a_container_that_is_gone_is_named_by_its_id_and_never_as_an_image,
    test_a_wait_past_its_timeout_raises_and_stop_ends_the_container,
    test_containers_are_found_by_run_label_and_their_figures_read_until_removed,
    test_wait_reports_the_exit_code_and_attach_before_start_gets_all_output,
)
from helpers import local_engine

from containerexec.engine.docker import DockerEngine

pytestmark = pytest.mark.podman  # CI runs these on Podman too


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    with local_engine() as real:
        yield real
