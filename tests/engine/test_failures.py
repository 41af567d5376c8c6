"""Clear failures on the real engine: exit 126 as Docker reports it, and Ctrl-C of a running
`containerexec` (it prints "not started" and the resume command).

Everything goes through the real `containerexec` command line and the real engine. Empty
arrays, fail-fast, the deadline and what `run` prints are unit tests on the fake engine
(tests/unit/test_failures_cli.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from helpers import run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

# Shard 1 fails (exit 2) after a second; every other shard would sleep for half a minute.
STALL = 'if [ "$CONTAINEREXEC_SHARD_INDEX" = 1 ]; then sleep 1; exit 2; fi; exec sleep 30'


def stall_spec(workspace: Workspace, array: str, retries: str = "{}", extra: str = "") -> str:
    return str(
        workspace.spec(
            f"name: stall\ncommand: [bash, -c, {json.dumps(STALL)}]\n"
            f"array: {array}\nretries: {retries}\n{extra}"
        )
    )


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


def test_a_cancelled_run_prints_not_started_and_the_resume_command(
    workspace: Workspace, docker_client: Any
) -> None:
    spec = stall_spec(workspace, "{values: [a, c, d], max_parallel: 1}")
    proc = workspace.start("run", spec, "--grace", "1", stdout=subprocess.PIPE)
    run_id = workspace.run_id()
    wait_for(lambda: run_containers(docker_client, run_id, running=True), what="the container")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert workspace.record().counts == {"cancelled": 1, "pending": 2}
    assert "not started" in err
    assert f"containerexec run {spec} --resume {run_id}" in err
    assert out.splitlines() == [run_id]  # an array's run: the id is all of stdout
