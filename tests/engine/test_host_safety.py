"""Issue 10, items 5 and 6: a fork bomb stays in its container, and a link inside an input
resolves inside the container. The refusals of host paths, which happen before any container
starts, are unit tests (tests/unit/test_host_safety_cli.py)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_containers
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.model.spec import DEFAULT_PIDS

# cgroup v2 puts pids.* at the root of the container's cgroup; v1 under pids/.
PIDS = "$(cat /sys/fs/cgroup/pids.{0} 2>/dev/null || cat /sys/fs/cgroup/pids/pids.{0})"

SPAWN = """
import subprocess, time
def pids(name):
    for path in ("/sys/fs/cgroup/pids." + name, "/sys/fs/cgroup/pids/pids." + name):
        try:
            return open(path).read().strip()
        except OSError:
            pass
print("max", pids("max"), flush=True)
failed = 0
for _ in range(300):
    try:
        subprocess.Popen(["sleep", "600"])
    except OSError:
        failed += 1
print("current", pids("current"), flush=True)
print("failed", failed, flush=True)
time.sleep(600)
"""

SPAWN_SPEC = f"""\
name: spawner
command: [python3, -c, {json.dumps(SPAWN)}]
resources: {{pids: 64, timeout: 20s, cpus: 0.5}}
"""

BOMB_SPEC = """\
name: bomb
command:
  - sh
  - -c
  - |
    echo "max {max}"
    bomb() {{ bomb | bomb & }}
    bomb 2>/dev/null
    sleep 600
resources: {{timeout: 8s, cpus: 0.5}}
""".format(max=PIDS.format("max"))


def _lines(workspace: Workspace, spec: Path) -> tuple[list[str], Any]:
    seen: list[str] = []
    _, _, result = workspace.run(spec, on_line=lambda _i, _s, line: seen.append(line.strip()))
    return seen, result


def _value(lines: list[str], word: str) -> int:
    found = [line.split()[1] for line in lines if line.startswith(word + " ")]
    assert found, (word, lines)
    return int(found[0])


@pytest.mark.podman  # CI: on Podman too
def test_spawning_stops_at_the_pids_limit(workspace: Workspace, docker_client: Any) -> None:
    """300 background sleeps against `pids: 64`: the cgroup holds at most 64 tasks."""
    lines, result = _lines(workspace, workspace.spec(SPAWN_SPEC))
    assert _value(lines, "max") == 64
    assert 2 < _value(lines, "current") <= 64
    assert _value(lines, "failed") > 200
    (shard,) = result.failed
    assert shard.failure == "timeout", shard


def test_a_fork_bomb_under_the_default_limit_times_out(
    workspace: Workspace, docker_client: Any
) -> None:
    """With no `resources.pids`, the default holds a real fork bomb; the host can still fork."""
    spec = workspace.spec(BOMB_SPEC)
    host_forks: list[int] = []
    limits: list[int] = []
    started = time.monotonic()

    def on_line(_i: int, _s: str, line: str) -> None:
        lines.append(line.strip())
        if line.startswith("max "):
            time.sleep(2)  # the bomb is going off now
            host_forks.append(subprocess.run(["true"], check=False, timeout=10).returncode)
            for c in run_containers(docker_client, workspace.store.ids()[0]):
                limits.append(
                    docker_client.api.inspect_container(c["Id"])["HostConfig"]["PidsLimit"]
                )

    lines: list[str] = []
    _, _, result = workspace.run(spec, on_line=on_line)
    elapsed = time.monotonic() - started
    assert _value(lines, "max") == DEFAULT_PIDS
    assert host_forks == [0]
    assert limits == [DEFAULT_PIDS]
    (shard,) = result.failed
    assert shard.failure == "timeout", shard
    assert elapsed < 60, elapsed


def test_links_to_host_specials_inside_an_input_are_kept(
    workspace: Workspace, docker_client: Any
) -> None:
    """A symlink resolves inside the container: a link to the host's socket reaches nothing."""
    data = workspace.folder("linked", {"a.txt": "a"})
    (data / "engine.sock").symlink_to("/var/run/docker.sock")
    (data / "shadow").symlink_to("/etc/shadow")
    spec = workspace.spec(
        """\
        name: linkprobe
        inputs:
          d: {type: directory}
        command: [sh, -c, 'test -S "$0/engine.sock" && echo SOCKET; echo done', "${{inputs.d}}"]
        """
    )
    seen: list[str] = []
    _, _, result = workspace.run(
        spec, {"d": str(data)}, on_line=lambda _i, _s, line: seen.append(line.strip())
    )
    assert result.state == "succeeded", result.failed
    assert seen == ["done"]
    assert not run_containers(docker_client, result.record.run_id)
