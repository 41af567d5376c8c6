"""Issue 22 item 10: the Python API shows the CLI's live progress and summary when asked
(`progress=True`), and hands every shard or job event to a callable (`progress=fn`).
The display is the CLI's own (containerexec/display/), so the fake engine plays the
containers: only what is printed and called is under test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome

from containerexec import JobEvent, ShardEvent, from_yaml


def array_module(ws: FakeWorkspace) -> Path:
    return ws.spec(
        "name: fan\noutputs: {out: {type: directory}}\n"
        "command: [fan, '${{outputs.out}}']\narray: {range: 3, max_parallel: 1}\n",
        name="fan.yaml",
    )


def shapes(text: str) -> list[str]:
    """Lines with run ids, times and paths made neutral, so two runs' displays compare."""
    text = re.sub(r"fan-\d{8}-\d{6}-[0-9a-f]{6}", "RUN", text)
    text = re.sub(r"\d+\.\d s", "T s", text)
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_module_run_progress_shows_what_the_cli_shows(
    workspace: FakeWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = array_module(workspace)
    cli = workspace.cli("run", str(spec), "--no-cache")
    assert cli.returncode == 0, cli.stderr
    result = from_yaml(spec).run(
        runs_dir=workspace.runs_dir, engine=workspace.engine, progress=True
    )
    shown = capsys.readouterr().err
    assert result.state == "succeeded"
    assert shapes(shown) == shapes(cli.stderr)
    assert "[3/3] shard 2 succeeded" in shown and f"record: {result.record_path}" in shown


def test_a_one_shard_module_streams_its_output_and_summary(
    workspace: FakeWorkspace, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = workspace.spec("name: hello\ncommand: [echo, hello]\n")
    workspace.engine.script = lambda inv, n: Outcome(output=b"hello from the container\n")
    from_yaml(spec).run(runs_dir=workspace.runs_dir, engine=workspace.engine, progress=True)
    out, err = capfd.readouterr()
    assert "hello from the container" in out
    assert "hello" in err and "succeeded" in err and "image:" in err


def test_a_callable_gets_every_shard_event_and_prints_nothing(
    workspace: FakeWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[ShardEvent] = []
    result = from_yaml(array_module(workspace)).run(
        runs_dir=workspace.runs_dir, engine=workspace.engine, progress=events.append
    )
    assert capsys.readouterr().err == ""
    assert events[0].kind == "planned" and events[0].count == 3
    finished = sorted(e.index for e in events if e.kind == "finished")
    assert finished == [0, 1, 2]
    assert {e.run_id for e in events} == {result.record.run_id}
    assert all(e.state == "succeeded" for e in events if e.kind == "finished")


def test_pipeline_run_progress_and_its_job_events(
    workspace: FakeWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    array_module(workspace)
    path = workspace.root / "pipe.yaml"
    path.write_text("name: pipe\njobs:\n  a: {module: fan.yaml}\n  b: {module: fan.yaml}\n")
    pipe = from_yaml(path)
    events: list[JobEvent] = []
    pipe.run(runs_dir=workspace.runs_dir, engine=workspace.engine, progress=events.append)
    assert capsys.readouterr().err == ""
    assert [(e.job, e.kind) for e in events if e.job == "a" and e.kind != "shard"] == [
        ("a", "started"),
        ("a", "finished"),
    ]
    shard_ends = [e for e in events if e.shard is not None and e.shard.kind == "finished"]
    assert sorted((e.job, e.shard.index) for e in shard_ends if e.shard) == [
        ("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)
    ]  # fmt: skip

    result = pipe.run(runs_dir=workspace.runs_dir, engine=workspace.engine, progress=True)
    shown = capsys.readouterr().err
    assert "job a succeeded (3/3 shards, 3 cached)" in shown  # the CLI's lines
    assert f"pipeline pipe {result.record.id}: succeeded" in shown and "record:" in shown
