"""Issue 10, items 5 and 6: a fork bomb stays in its container; inputs that would hand the
host to the container (its /proc, /sys, /dev, /run, the engine's socket, sockets, device
nodes, FIFOs) are refused before any container starts, in one line naming the path."""

from __future__ import annotations

import json
import os
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

DIR_SPEC = """\
name: reader
inputs:
  d: {type: directory}
command: [ls, "${{inputs.d}}"]
"""

FILE_SPEC = """\
name: filereader
inputs:
  f: {type: file}
command: [cat, "${{inputs.f}}"]
"""


def _lines(workspace: Workspace, spec: Path) -> tuple[list[str], Any]:
    seen: list[str] = []
    _, _, result = workspace.run(spec, on_line=lambda _i, _s, line: seen.append(line.strip()))
    return seen, result


def _value(lines: list[str], word: str) -> int:
    found = [line.split()[1] for line in lines if line.startswith(word + " ")]
    assert found, (word, lines)
    return int(found[0])


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


def _refused(workspace: Workspace, spec: Path, *args: str) -> str:
    """Run the CLI, expecting a refusal: exit 2, one line on stderr, no run, no container."""
    out = workspace.cli("run", str(spec), *args, timeout_s=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


@pytest.mark.parametrize(
    "path", ["/", "/proc", "/proc/1", "/sys/fs", "/dev", "/run", "/var/run", "/run/docker"]
)
def test_host_directories_are_refused(workspace: Workspace, path: str) -> None:
    if not Path(path).is_dir():
        pytest.skip(f"{path} is not a directory here")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={path}")
    assert "input 'd'" in line
    assert f"'{Path(path).resolve()}'" in line
    assert not workspace.store.ids()


def test_a_link_to_a_host_directory_is_refused(workspace: Workspace) -> None:
    (workspace.root / "proc-link").symlink_to("/proc")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", "d=proc-link")
    assert "'/proc'" in line


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/docker.sock"])
def test_the_engine_socket_as_a_file_input_is_refused(workspace: Workspace, path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"no {path} here")
    line = _refused(workspace, workspace.spec(FILE_SPEC), "-i", f"f={path}")
    assert "input 'f'" in line and "'/run/docker.sock'" in line and "socket" in line


def test_a_hard_link_to_the_engine_socket_is_the_engine_socket(workspace: Workspace) -> None:
    """Under another name, through DOCKER_HOST too, it is still the engine's socket."""
    sock = workspace.root / "engine.sock"
    os.link(Path("/var/run/docker.sock").resolve(), sock)
    out = workspace.cli(
        "run",
        str(workspace.spec(FILE_SPEC)),
        "-i",
        f"f={sock}",
        env={"DOCKER_HOST": f"unix://{sock}"},
        timeout_s=60,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert f"'{sock}'" in line and "engine's socket" in line, line


def test_a_hard_link_to_the_engine_socket_in_a_directory_is_refused(
    workspace: Workspace, docker_client: Any
) -> None:
    """The repro of the issue: through a read-only bind, a socket still answers."""
    data = workspace.folder("data", {"a.txt": "a", "sub/b.txt": "b"})
    os.link(Path("/var/run/docker.sock").resolve(), data / "sub" / "engine.sock")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={data}")
    assert f"'{data / 'sub' / 'engine.sock'}'" in line
    assert "socket" in line and "input 'd'" in line


def test_a_fifo_or_a_device_node_in_a_directory_is_refused(workspace: Workspace) -> None:
    data = workspace.folder("fifo-data", {"a.txt": "a"})
    os.mkfifo(data / "pipe")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={data}")
    assert f"'{data / 'pipe'}'" in line and "FIFO" in line
    dev = workspace.folder("dev-data", {"a.txt": "a"})
    os.mknod(dev / "null", 0o600 | 0o020000, os.makedev(1, 3))  # S_IFCHR: /dev/null's numbers
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={dev}")
    assert f"'{dev / 'null'}'" in line and "device" in line


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
