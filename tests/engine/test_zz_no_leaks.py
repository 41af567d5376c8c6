"""Runs last (see tests/conftest.py): the suite must not leave any run container behind."""

from __future__ import annotations

import docker

RUN_LABEL = "containerexec.run"


def test_no_container_labelled_containerexec_run_is_left_after_the_suite(
    docker_client: docker.DockerClient, session_started_at: float
) -> None:
    # Containers older than this session belong to someone else (or to an earlier run).
    since = int(session_started_at)
    left = [
        f"{c['Names'][0].lstrip('/')} ({c['Id'][:12]}, {c['State']}, "
        f"{RUN_LABEL}={c['Labels'].get(RUN_LABEL)!r})"
        for c in docker_client.api.containers(all=True, filters={"label": RUN_LABEL})
        if c["Created"] >= since
    ]
    assert not left, "containers left behind by this test session:\n  " + "\n  ".join(left)
