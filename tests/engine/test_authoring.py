"""Modules and pipelines from Python, run in real containers on the engine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from containerexec.authoring import Module, Pipeline
from containerexec.authoring.modules import load_target
from containerexec.cli import cli
from containerexec.run.executor import RunOptions
from containerexec.store.tree import RunStore

SOURCE = '''
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from containerexec.authoring import (
    ContainerModule,
    InputDir,
    InputFile,
    OutputDir,
    OutputFile,
    ShardIndex,
    ShardValue,
    module,
)

SEEN: list[str] = []


@module(image="containerexec/base:bookworm", array={"values": ["a", "b", "c", "d"]})
def record(data: InputDir, out: OutputDir, value: ShardValue, index: ShardIndex) -> None:
    """Each shard writes its value and everything it has seen."""
    SEEN.append(value)
    (out / f"{index}.json").write_text(json.dumps(
        {"value": value, "seen": SEEN, "pid": os.getpid(),
         "files": sorted(p.name for p in data.iterdir())}))


@dataclass
class Config:
    out: OutputDir
    values: tuple[str, ...] = ("p", "q", "r")


class Remember(ContainerModule):
    """Each shard remembers what it saw on self."""

    image = "containerexec/base:bookworm"

    def array(self):
        return list(self.config.values)

    def run(self, iteration_value=None, iteration_index=0):
        self.seen = [*getattr(self, "seen", []), iteration_value]
        (self.config.out / f"{iteration_index}.json").write_text(json.dumps(
            {"value": iteration_value, "seen": self.seen, "name": self.name()}))


@module(image="containerexec/base:bookworm")
def numbers(n: int, nums: OutputFile) -> None:
    """Write 0..n-1."""
    nums.write_text(" ".join(map(str, range(n))))


@module(image="containerexec/base:bookworm")
def total(nums: InputFile, result: OutputFile, scale: int = 1) -> None:
    """Sum the numbers, times scale."""
    result.write_text(str(scale * sum(map(int, nums.read_text().split()))))
'''

PIPELINE = """
name: sums
inputs: {n: {type: integer, default: 5}, scale: {type: integer}}
outputs: {result: "${{jobs.add.outputs.result}}"}
jobs:
  make: {module: numbers.yaml, inputs: {n: "${{inputs.n}}"}}
  add:
    module: total.yaml
    inputs: {nums: "${{jobs.make.outputs.nums}}", scale: "${{inputs.scale}}"}
"""


def load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "shardmods.py"
    if not path.exists():
        path.write_text(SOURCE)
    return load_target(f"{path}:{name}")


def results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_decorated_function_shards_run_in_containers_and_see_only_their_own_values(
    tmp_path: Path,
    test_session_label: dict[str, str],
) -> None:
    record = load(tmp_path, "record")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("x")
    result = record.run(
        data=tmp_path / "data",
        out=tmp_path / "out",
        runs_dir=tmp_path / "runs",
        options=RunOptions(labels=test_session_label, max_parallel=2),
    )
    assert result.record.state == "succeeded" and result.record.shard_count == 4
    seen = results(tmp_path / "out")
    assert [s["value"] for s in seen] == ["a", "b", "c", "d"]
    assert all(s["seen"] == [s["value"]] for s in seen)  # no shard saw another's state
    assert all(s["files"] == ["in.txt"] for s in seen)
    invocations = [
        r.invocation for r in RunStore(tmp_path / "runs").load_shards(result.record.run_id).values()
    ]
    assert {inv.image for inv in invocations} == {result.record.image.pinned}


def test_stopes_class_shards_run_in_containers_and_share_nothing_set_on_self(
    tmp_path: Path,
    test_session_label: dict[str, str],
) -> None:
    remember, config = load(tmp_path, "Remember"), load(tmp_path, "Config")
    module = remember(config(out=tmp_path / "out")).as_module()
    result = module.run(runs_dir=tmp_path / "runs", options=RunOptions(labels=test_session_label))
    assert result.record.module == "remember" and result.record.shard_count == 3
    seen = results(tmp_path / "out")
    assert [s["value"] for s in seen] == ["p", "q", "r"]
    assert all(s["seen"] == [s["value"]] and s["name"] == "remember" for s in seen)
    assert result.record.spec["description"] == "Each shard remembers what it saw on self."


def test_init_project_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "tally", "--dir", str(tmp_path)]).exit_code == 0
    monkeypatch.chdir(tmp_path)  # the README's commands run from the folder above the project
    result = runner.invoke(
        cli,
        [
            "--runs-dir",
            str(tmp_path / "runs"),
            "run",
            "tally/tally.yaml",
            "-i",
            "data=tally/data",
            "-o",
            "out=tally-out",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        tmp_path / "tally-out" / "poem.txt.tsv"
    ).read_text() == "lines\twords\tchars\n4\t27\t130\n"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tally"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "3 passed" in tests.stdout, tests.stdout + tests.stderr


def test_exported_pipeline_gives_the_same_outputs_as_its_yaml(
    tmp_path: Path,
    test_session_label: dict[str, str],
) -> None:
    for name in ("numbers", "total"):
        load(tmp_path, name).write(tmp_path / f"{name}.yaml")
    yaml_path = tmp_path / "sums.yaml"
    yaml_path.write_text(textwrap.dedent(PIPELINE))
    code = tmp_path / "code" / "sums.py"
    exported = CliRunner().invoke(cli, ["pipeline", "export", str(yaml_path), "-o", str(code)])
    assert exported.exit_code == 0, exported.output
    runs = {"runs_dir": tmp_path / "runs", "labels": test_session_label, "cache": False}
    from_yaml = Pipeline.from_yaml(yaml_path).run(scale=3, result=tmp_path / "a.txt", **runs)
    from_code = load_target(f"{code}:sums")
    assert isinstance(from_code, Pipeline)
    from_code.run(scale=3, result=tmp_path / "b.txt", **runs)
    assert from_yaml.state == "succeeded"
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text() == "30"
    assert isinstance(Module.from_yaml(tmp_path / "total.yaml"), Module)
