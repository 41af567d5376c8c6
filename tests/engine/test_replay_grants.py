"""Issue 20, items 1 and 2: an honest record replays in a real container, its input at its
port's place, and says what it grants. Edited records (refused before any container) and the
--allow-user / --allow-network grants are unit tests: tests/unit/test_replay_refusals.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import CONTAINEREXEC
from workspace import Workspace

from containerexec.store.tree import RunStore

SPEC = """\
name: grants-probe
inputs: {data: {type: directory}}
outputs: {out: {type: directory}}
command: [sh, -c, 'ls "$0" > "$1/list.txt"; echo "boom in $0" >&2; exit 3',
          "${{inputs.data}}", "${{outputs.out}}"]
"""
ME = f"{os.getuid()}:{os.getgid()}"


@dataclass(frozen=True)
class Failed:
    """A real failed run, exported as JSON."""

    run_id: str
    data: Path
    export: dict[str, Any]


@pytest.fixture(scope="module")
def failed(
    tmp_path_factory: pytest.TempPathFactory, test_session_label: dict[str, str], docker_client: Any
) -> Iterator[Failed]:
    ws = Workspace(tmp_path_factory.mktemp("grants"), test_session_label)
    data = ws.folder("data", {"a.txt": "alpha\n"})
    _, _, result = ws.run(ws.spec(SPEC), {"data": str(data)}, {"out": str(ws.root / "out")})
    assert result.record.state == "failed"
    out = ws.cli("runs", "export", result.record.run_id, "-o", str(ws.root / "export.json"))
    assert out.returncode == 0, out.stderr
    yield Failed(result.record.run_id, data, json.loads((ws.root / "export.json").read_text()))


def repro(
    failed: Failed, tmp_path: Path, change: Callable[[dict[str, Any]], None] | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """`containerexec repro` of the export, its failed shard's record changed by `change`."""
    data = json.loads(json.dumps(failed.export))
    if change is not None:
        change(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return subprocess.run(
        [CONTAINEREXEC, "--runs-dir", str(tmp_path / "runs"), "repro", str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def invocation(data: dict[str, Any]) -> dict[str, Any]:
    inv: dict[str, Any] = data["shards"][0]["invocation"]
    return inv


def test_an_honest_record_replays_and_says_what_it_grants(failed: Failed, tmp_path: Path) -> None:
    out = repro(failed, tmp_path, None)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "reproduced: exit 3" in out.stdout
    assert f"  user:    {ME} (you)" in out.stderr
    assert "  network: off" in out.stderr
    assert f"  mount:   ro {failed.data} -> /inputs/data" in out.stderr
    assert "boom in /inputs/data" in out.stderr  # its input, at its port's place
    (replayed,) = RunStore(tmp_path / "runs").ids()
    inv = RunStore(tmp_path / "runs").load_shards(replayed)[0].invocation
    assert {m.name: m.read_only for m in inv.mounts} == {"data": True, "out": False}
    assert not inv.network and inv.user == ME
