"""Moved from tests/engine/test_repro.py (and test_bundle.py): `repro --inputs` of changed
inputs is refused listing the changes; with --ignore-input-changes the verdict says which
changes it ran on and the record holds them, and fixed inputs say "not reproduced". Input
manifests and the verdict are ours, so tests/fakes.FakeEngine plays the job; pulls by digest,
shells and debuggers stay engine tests.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_cli import Done, FakeWorkspace
from fakes import FakeEngine, Outcome

from containerexec.model.invocation import Invocation
from containerexec.model.spec import load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

SPEC = """\
name: cx-repro-job
version: "1"
environment: {image: "containerexec/base:bookworm"}
inputs:
  data: {type: directory}
outputs:
  out: {type: directory}
command: [python3, /app/job.py, "${{shard.value}}", "${{inputs.data}}", "${{outputs.out}}"]
array: {values: [a, b, c], max_parallel: 3}
"""


def job(inv: Invocation, n: int) -> Outcome:
    """/app/job.py: fails (exit 3) on a text holding 'bad', else writes the text in capitals."""
    value = inv.argv[2]
    [data] = [Path(m.source) for m in inv.mounts if m.name == "data"]
    text = (data / f"{value}.txt").read_text()
    said = f"job 1 shard {value}: {len(text)} bytes\n".encode()
    if "bad" in text:
        fatal = f"fatal: record 17 of {value}.txt is bad\n".encode()
        return Outcome(exit_code=3, output=said, errors=fatal, files={})
    return Outcome(output=said, files={f"out/{value}.out": text.upper().encode()})


@dataclass(frozen=True)
class Scenario:
    data: Path
    export: Path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    tmp = tmp_path_factory.mktemp("repro")
    data = tmp / "data"
    data.mkdir()
    for name, text in {"a": "fine\n", "b": "a bad record\n", "c": "also fine\n"}.items():
        (data / f"{name}.txt").write_text(text)
    spec_path = tmp / "job.yaml"
    spec_path.write_text(SPEC)
    ws = FakeWorkspace(tmp, FakeEngine(job))
    result = (
        Executor(ws.engine, ws.store)
        .start(
            load_spec(spec_path),
            {"data": str(data)},
            {},
            spec_path=spec_path,
            options=RunOptions(default_outputs=tmp / "outputs"),
        )
        .wait()
    )
    assert [s.index for s in result.failed] == [1], result
    exported = ws.cli("runs", "export", "last", "-o", str(tmp / "failed.json"))
    assert exported.returncode == 0, exported.stderr
    return Scenario(data, tmp / "failed.json")


def repro(tmp_path: Path, *args: str) -> Done:
    """`containerexec --runs-dir TMP/runs repro ARGS` on a fake engine that runs the job."""
    return FakeWorkspace(tmp_path, FakeEngine(job)).cli("repro", *args)


def test_repro_with_changed_inputs_is_refused_listing_the_changed_files(
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    changed = tmp_path / "data"
    shutil.copytree(scenario.data, changed)
    (changed / "b.txt").write_text("a good record\n")
    (changed / "c.txt").unlink()
    (changed / "d.txt").write_text("new\n")

    result = repro(tmp_path, str(scenario.export), "--inputs", f"data={changed}")

    assert result.returncode != 0
    for line in (
        "changed  data/b.txt (size 13 -> 14 bytes)",
        "removed  data/c.txt",
        "added    data/d.txt",
        "--ignore-input-changes",
    ):
        assert line in result.stderr, result.stderr
    assert not RunStore(tmp_path / "runs").ids()


def test_repro_of_fixed_inputs_says_not_reproduced_and_exits_0(
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    fixed = tmp_path / "data"
    shutil.copytree(scenario.data, fixed)
    (fixed / "b.txt").write_text("a fine record\n")

    result = repro(
        tmp_path,
        str(scenario.export),
        "--shard",
        "1",
        "--inputs",
        f"data={fixed}",
        "--ignore-input-changes",
    )

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "not reproduced: recorded exit 3, got 0" in result.stdout
    out = RunStore(tmp_path / "runs").load_run("last").outputs["out"]
    assert Path(out, "b.out").read_text() == "A FINE RECORD\n"


def test_ignored_input_changes_qualify_the_verdict_and_are_what_the_record_holds(
    scenario: Scenario, tmp_path: Path
) -> None:
    changed = tmp_path / "data"
    shutil.copytree(scenario.data, changed)
    (changed / "c.txt").write_text("also fine, and longer\n")
    result = repro(
        tmp_path, str(scenario.export), "-i", f"data={changed}", "--ignore-input-changes"
    )
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout.strip().splitlines()[-1] == (
        "reproduced: exit 3, same as recorded (on different inputs, --ignore-input-changes: "
        "data/c.txt (size 10 -> 22 bytes))"
    )
    run_id = json.loads(scenario.export.read_text())["run"]["run_id"]
    rec = RunStore(tmp_path / "runs").load_run("last")
    sizes = {e.path: e.size for e in rec.input_manifests["data"]}
    assert rec.repro_of == run_id and sizes["c.txt"] == 22
