"""Clear failures on the real engine: exit 126 as Docker reports it.

Everything goes through the real `containerexec` command line and the real engine. Empty
arrays, fail-fast, the deadline, Ctrl-C and what `run` prints are unit tests on the fake
engine (tests/unit/test_failures_cli.py).
"""

from __future__ import annotations

import pytest
from workspace import Workspace, workspace_fixture  # noqa: F401

pytestmark = pytest.mark.podman  # CI also runs these on Podman: exit 126


def test_exit_126_is_cannot_exec_and_never_retried(workspace: Workspace) -> None:
    spec = workspace.spec("name: folder\ncommand: [/etc]\nretries: {max_attempts: 3}\n")
    result = workspace.cli("run", str(spec))
    assert result.returncode == 126, result.stderr
    shard = workspace.shards()[0]
    assert shard.failure == "cannot_exec"
    assert len(shard.attempts) == 1
    assert "cannot be executed" in result.stderr


def test_exit_126_is_retried_when_on_exit_codes_lists_it(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: folder\ncommand: [/etc]\nretries: {max_attempts: 2, on_exit_codes: [126],"
        " backoff: {initial: 0.1s}}\n"
    )
    result = workspace.cli("run", str(spec))
    assert result.returncode == 126, result.stderr
    assert [a.failure for a in workspace.shards()[0].attempts] == ["cannot_exec"] * 2
