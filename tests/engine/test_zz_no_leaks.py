"""Runs last (see tests/conftest.py): the suite must not leave any run container behind."""

from __future__ import annotations

import docker
from helpers import labelled_containers

from containerexec.labels import LABEL_RUN


def test_no_container_labelled_containerexec_run_is_left_after_the_suite(
    docker_client: docker.DockerClient,
    session_started_at: float,
    test_session_label: dict[str, str],
) -> None:
    # Containers older than this session, or labelled by another test session running on
    # the same engine, belong to someone else. Unlabelled ones (CLI runs) count as ours.
    since = int(session_started_at)
    [(session_key, session_id)] = test_session_label.items()
    left = [
        f"{c['Names'][0].lstrip('/')} ({c['Id'][:12]}, {c['State']}, "
        f"{LABEL_RUN}={c['Labels'].get(LABEL_RUN)!r})"
        for c in labelled_containers(docker_client, LABEL_RUN)
        if c["Created"] >= since and c["Labels"].get(session_key, session_id) == session_id
    ]
    assert not left, "containers left behind by this test session:\n  " + "\n  ".join(left)
