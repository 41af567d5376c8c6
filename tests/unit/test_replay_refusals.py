"""Issue 20 items 1-2, moved from tests/engine/test_replay_grants.py: a record edited as its
sender could (the engine's socket mounted, a host folder read-write, /etc as the input, a
network) is refused by `repro` with exit 2 and one line, before any container or record;
another user and a network are granted only by flag.

The failed run and the replay run on tests/fakes.FakeEngine; honest replays, which do run
a container, stay engine tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_cli import Done, FakeWorkspace
from fakes import FakeEngine, Outcome

from containerexec.store.tree import RunStore

SPEC = """\
name: grants-probe
inputs: {data: {type: directory}}
outputs: {out: {type: directory}}
command: [sh, -c, 'ls "$0" > "$1/list.txt"; echo "boom in $0" >&2; exit 3',
          "${{inputs.data}}", "${{outputs.out}}"]
"""


@dataclass(frozen=True)
class Failed:
    """A failed run, exported as JSON."""

    run_id: str
    data: Path
    export: dict[str, Any]


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Failed:
    ws = FakeWorkspace(tmp_path_factory.mktemp("grants"))
    ws.engine.script = lambda inv, n: Outcome(exit_code=3, output=b"boom\n", files={})
    data = ws.folder("data", {"a.txt": "alpha\n"})
    _, _, result = ws.run(ws.spec(SPEC), {"data": str(data)}, {"out": str(ws.root / "out")})
    assert result.record.state == "failed"
    out = ws.cli("runs", "export", result.record.run_id, "-o", str(ws.root / "export.json"))
    assert out.returncode == 0, out.stderr
    return Failed(result.record.run_id, data, json.loads((ws.root / "export.json").read_text()))


def repro(
    failed: Failed,
    tmp_path: Path,
    engine: FakeEngine,
    change: Callable[[dict[str, Any]], None] | None,
    *args: str,
) -> Done:
    """`containerexec repro` of the export, its failed shard's record changed by `change`."""
    data = json.loads(json.dumps(failed.export))
    if change is not None:
        change(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return FakeWorkspace(tmp_path, engine).cli("repro", str(path), *args)


def invocation(data: dict[str, Any]) -> dict[str, Any]:
    inv: dict[str, Any] = data["shards"][0]["invocation"]
    return inv


def data_mount(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        (m,) = [m for m in invocation(data)["mounts"] if m["name"] == "data"]
        m.update(fields)

    return change


def add_socket(data: dict[str, Any]) -> None:
    invocation(data)["mounts"].append(
        {
            "kind": "input",
            "name": "engine",
            "source": "/var/run/docker.sock",
            "target": "/inputs/engine",
            "read_only": True,
        }
    )


def etc_without_manifest(data: dict[str, Any]) -> None:
    data_mount(source="/etc")(data)
    data["run"]["input_manifests"] = {}
    data["shards"][0]["input_manifests"] = {}


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (add_socket, "recorded input mount 'engine' (/var/run/docker.sock -> /inputs/engine)"),
        (data_mount(source="/var/run/docker.sock"), "is the engine's socket"),
        (data_mount(read_only=False), "asks to be writable"),
        (etc_without_manifest, "input 'data' would be read at its recorded place '/etc'"),
        (lambda d: invocation(d).update(network=True), "field 'network'"),
    ],
    ids=["socket-added", "socket-as-input", "read-write", "etc", "network"],
)
def test_an_edited_record_is_refused_in_one_line_before_anything_runs(
    failed: Failed,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    said: str,
) -> None:
    engine = FakeEngine()
    out = repro(failed, tmp_path, engine, change)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: shard 0 of run "), out.stderr
    assert said in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert not RunStore(tmp_path / "runs").ids()  # no replay run was recorded
    assert engine.created == []


ME = f"{os.getuid()}:{os.getgid()}"
OTHER = "0:0" if os.getuid() != 0 else "4242:4242"


def fails_again() -> FakeEngine:
    """An engine whose replayed container exits 3, as the recorded one did."""
    return FakeEngine(lambda inv, n: Outcome(exit_code=3, files={}))


def test_a_record_of_another_user_replays_as_you_unless_allow_user(
    failed: Failed, tmp_path: Path
) -> None:
    other = lambda d: invocation(d).update(user=OTHER)  # noqa: E731
    out = repro(failed, tmp_path, fails_again(), other)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert f"  user:    {ME} (you; the record says {OTHER}, --allow-user runs as that)" in (
        out.stderr
    )
    (replayed,) = RunStore(tmp_path / "runs").ids()
    assert RunStore(tmp_path / "runs").load_shards(replayed)[0].invocation.user == ME


def test_allow_network_grants_the_network_and_says_so(failed: Failed, tmp_path: Path) -> None:
    network = lambda d: invocation(d).update(network=True)  # noqa: E731
    out = repro(failed, tmp_path, fails_again(), network, "--allow-network")
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "  network: on (--allow-network)" in out.stderr
    (replayed,) = RunStore(tmp_path / "runs").ids()
    assert RunStore(tmp_path / "runs").load_shards(replayed)[0].invocation.network
