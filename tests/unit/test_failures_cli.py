"""Moved from tests/engine/test_failures.py: empty arrays, fail-fast, the run deadline, and
what `run` prints (the run id on stdout, "not started", the resume command, also after a
Ctrl-C, sent to this process while the CLI's handler is in place), through the CLI on
tests/fakes.FakeEngine. Its containers exit as the engine tests' commands would.

Exit 126 as Docker reports it stays an engine test.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from fake_cli import Done, FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome

from containerexec.model.invocation import Invocation

# Shard 1 fails (exit 2) after a second; every other shard would sleep for half a minute.
STALL = 'if [ "$CONTAINEREXEC_SHARD_INDEX" = 1 ]; then sleep 1; exit 2; fi; exec sleep 30'


def stall(inv: Invocation, n: int) -> Outcome:
    """STALL, played by the fake engine."""
    if inv.shard_index == 1:
        return Outcome(seconds=1, exit_code=2)
    return Outcome(seconds=30)


def stall_spec(workspace: FakeWorkspace, array: str, retries: str = "{}", extra: str = "") -> str:
    workspace.engine.script = stall
    return str(
        workspace.spec(
            f"name: stall\ncommand: [bash, -c, {json.dumps(STALL)}]\n"
            f"array: {array}\nretries: {retries}\n{extra}"
        )
    )


def run_glob(workspace: FakeWorkspace, data: Path, array_extra: str = "") -> Done:
    """`run` a module whose array globs '*.txt' in `data`."""
    spec = workspace.spec(
        "name: globbed\ninputs: {corpus: {type: directory}}\n"
        "command: [cat, '${{inputs.corpus}}/${{shard.value}}']\n"
        f"array: {{glob: {{input: corpus, pattern: '*.txt'}}{array_extra}}}\n"
    )
    return workspace.cli("run", str(spec), "-i", f"corpus={data}")


def test_a_glob_that_matches_nothing_is_refused_with_exit_2(workspace: FakeWorkspace) -> None:
    data = workspace.folder("data", {"notes.md": "not a text file"})
    result = run_glob(workspace, data)
    assert result.returncode == 2, result.stderr
    assert "pattern '*.txt' matches no file in" in result.stderr
    assert str(data) in result.stderr and "array.allow_empty: true" in result.stderr
    assert "Traceback" not in result.stderr
    assert workspace.store.ids() == []  # refused before anything was recorded or started


def test_allow_empty_lets_an_empty_array_succeed_and_says_so(workspace: FakeWorkspace) -> None:
    result = run_glob(workspace, workspace.folder("data"), ", allow_empty: true")
    assert result.returncode == 0, result.stderr
    assert "0 shards: the array has no element (array.allow_empty)" in result.stderr
    assert workspace.record().state == "succeeded"
    assert workspace.record().shard_count == 0


def test_a_fail_run_exit_code_stops_the_whole_run_at_once(workspace: FakeWorkspace) -> None:
    spec = stall_spec(
        workspace,
        "{range: 4, max_parallel: 2}",
        "{max_attempts: 3, fail_run_on_exit_codes: [2]}",
    )
    started = time.monotonic()
    result = workspace.cli("run", spec, "--grace", "2")
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert seconds < 20  # not the 30 s that shard 0 would sleep
    record = workspace.record()
    assert record.state == "failed"
    assert record.reason == "fail_fast: shard 1 exited with 2"
    shards = workspace.shards()
    assert len(shards[1].attempts) == 1  # failing the run outranks the retries
    assert shards[1].state == "failed"
    assert shards[0].state == "cancelled"
    assert shards[0].message.startswith("stopped: fail_fast")
    assert sorted(shards) == [0, 1]  # shards 2 and 3 never started
    assert record.counts == {"cancelled": 1, "failed": 1, "pending": 2}
    assert workspace.engine.containers({}) == []
    assert "fail_fast: shard 1 exited with 2" in result.stderr
    assert "not started" in result.stderr
    assert f"containerexec run {spec} --resume {record.run_id}" in result.stderr
    assert result.stdout.splitlines()[-1] == record.run_id
    shown = workspace.cli("runs", "show", record.run_id).stdout
    assert "reason:   fail_fast: shard 1 exited with 2" in shown
    assert "not started" in shown


def test_the_run_deadline_stops_running_shards_and_starts_no_more(
    workspace: FakeWorkspace,
) -> None:
    spec = stall_spec(workspace, "{values: [a, b, c], max_parallel: 1}", "{max_attempts: 5}")
    started = time.monotonic()
    result = workspace.cli("run", spec, "--deadline", "2s", "--grace", "1")
    seconds = time.monotonic() - started
    assert result.returncode == 124, result.stderr
    assert seconds < 20
    record = workspace.record()
    assert record.state == "failed"
    assert record.reason is not None and record.reason.startswith("deadline_exceeded")
    assert record.deadline_s == 2.0
    shards = workspace.shards()
    assert sorted(shards) == [0]  # the deadline outranks the retries and the other shards
    assert shards[0].state == "cancelled" and len(shards[0].attempts) == 1
    assert workspace.engine.containers({}) == []
    assert "deadline_exceeded" in result.stderr
    assert f"--resume {record.run_id}" in result.stderr


def test_run_prints_the_run_id_as_the_last_line_of_stdout(workspace: FakeWorkspace) -> None:
    workspace.engine.script = lambda inv, n: Outcome(output=b"hello world\n")
    spec = workspace.spec("name: hello\ncommand: [echo, hello world]\n")
    result = workspace.cli("run", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello world", workspace.run_id()]


def test_pipeline_run_prints_its_id_on_stdout(workspace: FakeWorkspace) -> None:
    workspace.spec("name: hello\ncommand: [echo, hello]\n")
    pipeline = workspace.root / "pipeline.yaml"
    pipeline.write_text("name: greet\njobs:\n  hi: {module: module.yaml}\n")
    result = workspace.cli("pipeline", "run", str(pipeline))
    assert result.returncode == 0, result.stderr
    [pipeline_id] = result.stdout.splitlines()
    assert pipeline_id in result.stderr  # the summary's title names it too
    assert workspace.store.load_run(f"{pipeline_id}.hi").state == "succeeded"


def test_a_cancelled_run_prints_not_started_and_the_resume_command(
    workspace: FakeWorkspace,
) -> None:
    spec = stall_spec(workspace, "{values: [a, c, d], max_parallel: 1}")
    workspace.engine.script = lambda inv, n: Outcome(seconds=30)  # every shard stalls

    def ctrl_c(inv: Invocation) -> None:  # the first container is running: Ctrl-C
        workspace.engine.on_start = None
        os.kill(os.getpid(), signal.SIGINT)

    workspace.engine.on_start = ctrl_c
    result = workspace.cli("run", spec, "--grace", "1")
    run_id = workspace.run_id()
    assert result.returncode == 130, result.stderr
    assert workspace.record().counts == {"cancelled": 1, "pending": 2}
    assert "not started" in result.stderr
    assert f"containerexec run {spec} --resume {run_id}" in result.stderr
    assert result.stdout.splitlines() == [run_id]  # an array's run: the id is all of stdout
