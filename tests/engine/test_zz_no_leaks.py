"""Runs last (see tests/conftest.py): the suite must not leave any run container behind."""

from __future__ import annotations

import docker
from helpers import labelled_containers

from containerexec.labels import LABEL_RUN


def test_no_container_labelled_containerexec_run_is_left_after_the_suite(
    docker_client: docker.DockerClient, session_started_at: float
) -> None:
    # Containers older than this session belong to someone else (or to an earlier run).
    since = int(session_started_at)
    left = [
        f"{c['Names'][0].lstrip('/')} ({c['Id'][:12]}, {c['State']}, "
        f"{LABEL_RUN}={c['Labels'].get(LABEL_RUN)!r})"
        for c in labelled_containers(docker_client, LABEL_RUN)
        if c["Created"] >= since
    ]
    assert not left, "containers left behind by this test session:\n  " + "\n  ".join(left)
