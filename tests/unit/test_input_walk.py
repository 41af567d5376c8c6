"""Issue 10, item 6, without an engine: the input walk and the host paths bind refuses.

The CLI refusals against the real engine are in tests/engine/test_host_safety.py.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerexec.engine.docker import engine_sockets
from containerexec.errors import UsageError
from containerexec.model.bindings import bind
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.spec import parse_spec
from containerexec.store.manifests import SpecialFile, input_manifests, manifest

SPEC = parse_spec(
    """\
name: reader
environment: {image: containerexec/base:bookworm}
inputs:
  d: {type: directory, optional: true}
  f: {type: file, optional: true}
command: [ls]
""",
    "reader.yaml",
)


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    """A unix socket something listens on, as an engine would."""
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        yield path


def test_docker_host_names_the_engine_socket(listening: Path) -> None:
    # DockerEngine.places() names DOCKER_HOST's socket (engine_sockets); run -i gets it.
    engine = EnginePlaces(sockets=engine_sockets(f"unix://{listening}"))
    with pytest.raises(UsageError, match="is the engine's socket") as info:
        bind(SPEC, {"f": str(listening)}, {}, engine_places=engine)
    assert f"'{listening}'" in str(info.value) and "input 'f'" in str(info.value)


def test_any_socket_as_a_file_input_is_refused(listening: Path) -> None:
    with pytest.raises(UsageError, match=f"'{listening}' is a socket"):
        bind(SPEC, {"f": str(listening)}, {})


def test_a_socket_deep_in_a_directory_is_found_by_the_manifest_walk(
    tmp_path: Path, listening: Path
) -> None:
    data = tmp_path / "data"
    (data / "a" / "b").mkdir(parents=True)
    (data / "a" / "x.txt").write_text("x")
    os.link(listening, data / "a" / "b" / "s.sock")
    bindings = bind(SPEC, {"d": str(data)}, {})
    with pytest.raises(UsageError) as info:
        input_manifests(SPEC, bindings)
    (line,) = str(info.value).splitlines()
    assert f"input 'd': '{data / 'a' / 'b' / 's.sock'}' is a socket" in line


def test_links_are_listed_as_their_files_and_never_refused(tmp_path: Path) -> None:
    """A link resolves inside the container, so a link to a FIFO hands nothing out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    (outside / "real.txt").write_text("real")
    data = tmp_path / "data"
    data.mkdir()
    (data / "pipe").symlink_to(outside / "pipe")
    (data / "real").symlink_to(outside / "real.txt")
    (data / "dir").symlink_to(outside)
    (data / "dangling").symlink_to(tmp_path / "nothing")
    entries = manifest(str(data), refuse_specials=True)
    assert [(rel, size) for rel, size, _ in entries] == [("real", 4)]


def test_specials_are_skipped_when_not_refused(tmp_path: Path) -> None:
    """The cache lists staged outputs with the same walk; it never refused anything."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "a.txt").write_text("a")
    assert [e[0] for e in manifest(str(tmp_path))] == ["a.txt"]
    with pytest.raises(SpecialFile):
        manifest(str(tmp_path), refuse_specials=True)


def test_an_unreadable_file_is_one_line_naming_it() -> None:
    """As root every file is readable, so the walk runs in a child without root's rights."""
    data = Path(tempfile.mkdtemp(prefix="cx-unreadable-"))
    try:
        data.chmod(0o755)
        (data / "ok.txt").write_text("ok")
        (data / "secret.txt").write_text("secret")
        (data / "secret.txt").chmod(0)
        bindings = bind(SPEC, {"d": str(data)}, {})
        message = _in_child_as_nobody(lambda: input_manifests(SPEC, bindings))
    finally:
        (data / "secret.txt").chmod(0o644)
        for p in data.iterdir():
            p.unlink()
        data.rmdir()
    assert message.startswith("UsageError: module 'reader': input 'd': cannot read '"), message
    assert f"'{data / 'secret.txt'}': Permission denied" in message
    assert "\n" not in message


def _in_child_as_nobody(call: object) -> str:
    """Run `call` in a forked child (as uid 65534 when we are root); what it raised."""
    assert callable(call)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            if os.geteuid() == 0:
                os.setegid(65534)
                os.seteuid(65534)
            call()
            text = "returned"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            text = f"{type(exc).__name__}: {exc}"
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out
