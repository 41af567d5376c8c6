"""Issue 10 item 6, moved from tests/engine/test_host_safety.py: inputs that would hand the
host to the container (its /proc, /sys, /dev, /run, the engine's socket, sockets, device
nodes, FIFOs) are refused before any container starts, in one line naming the path.

Every refusal here happens before the engine creates anything, so the CLI runs on
tests/fakes.FakeEngine; the fork bomb and links resolved inside a container stay engine tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401

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


def _refused(workspace: FakeWorkspace, spec: Path, *args: str) -> str:
    """Run the CLI, expecting a refusal: exit 2, one line on stderr, no run, no container."""
    out = workspace.cli("run", str(spec), *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    assert "Traceback" not in out.stderr
    assert workspace.engine.created == []
    return lines[0]


def _engine_socket() -> Path:
    sock = Path("/var/run/docker.sock")
    if not sock.exists():
        pytest.skip(f"no {sock} here")
    return sock.resolve()


@pytest.mark.parametrize(
    "path", ["/", "/proc", "/proc/1", "/sys/fs", "/dev", "/run", "/var/run", "/run/docker"]
)
def test_host_directories_are_refused(workspace: FakeWorkspace, path: str) -> None:
    if not Path(path).is_dir():
        pytest.skip(f"{path} is not a directory here")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={path}")
    assert "input 'd'" in line
    assert f"'{Path(path).resolve()}'" in line
    assert not workspace.store.ids()


def test_a_link_to_a_host_directory_is_refused(workspace: FakeWorkspace) -> None:
    (workspace.root / "proc-link").symlink_to("/proc")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", "d=proc-link")
    assert "'/proc'" in line


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/docker.sock"])
def test_the_engine_socket_as_a_file_input_is_refused(workspace: FakeWorkspace, path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"no {path} here")
    line = _refused(workspace, workspace.spec(FILE_SPEC), "-i", f"f={path}")
    assert "input 'f'" in line and "'/run/docker.sock'" in line and "socket" in line


def test_a_hard_link_to_the_engine_socket_is_the_engine_socket(workspace: FakeWorkspace) -> None:
    """Under another name, through DOCKER_HOST too, it is still the engine's socket."""
    sock = workspace.root / "engine.sock"
    os.link(_engine_socket(), sock)
    out = workspace.cli(
        "run",
        str(workspace.spec(FILE_SPEC)),
        "-i",
        f"f={sock}",
        env={"DOCKER_HOST": f"unix://{sock}"},
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert f"'{sock}'" in line and "engine's socket" in line, line


def test_a_hard_link_to_the_engine_socket_in_a_directory_is_refused(
    workspace: FakeWorkspace,
) -> None:
    """The repro of the issue: through a read-only bind, a socket still answers."""
    data = workspace.folder("data", {"a.txt": "a", "sub/b.txt": "b"})
    os.link(_engine_socket(), data / "sub" / "engine.sock")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={data}")
    assert f"'{data / 'sub' / 'engine.sock'}'" in line
    assert "socket" in line and "input 'd'" in line


def test_a_fifo_or_a_device_node_in_a_directory_is_refused(workspace: FakeWorkspace) -> None:
    data = workspace.folder("fifo-data", {"a.txt": "a"})
    os.mkfifo(data / "pipe")
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={data}")
    assert f"'{data / 'pipe'}'" in line and "FIFO" in line
    dev = workspace.folder("dev-data", {"a.txt": "a"})
    os.mknod(dev / "null", 0o600 | 0o020000, os.makedev(1, 3))  # S_IFCHR: /dev/null's numbers
    line = _refused(workspace, workspace.spec(DIR_SPEC), "-i", f"d={dev}")
    assert f"'{dev / 'null'}'" in line and "device" in line
