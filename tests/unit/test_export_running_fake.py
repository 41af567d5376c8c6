"""Issue 20, item 7, moved from tests/engine/test_export_running.py: `runs export` of a run
(or pipeline run) that is still running is refused in one line with exit 2, never a silent
partial snapshot; with --wait it waits for the end and then exports the final states.

The run is driven in this process on tests/fakes.FakeEngine, its containers held until the
test lets them go, so the lock names this process; the waiting exports are real
`containerexec` processes, which read the store and never reach an engine. The detached
Slurm run stays an engine test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome
from helpers import CONTAINEREXEC, wait_for

from containerexec.cli.status import pipeline_status, run_status
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.model.spec import load_spec
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.run.executor import Executor, RunOptions

SLEEPER = (
    "name: sleeper\n"
    "outputs: {out: {type: directory}}\n"
    "command: [sh, -c, 'sleep 5; echo done > \"$0/x\"', '${{outputs.out}}']\n"
)


@pytest.fixture
def go(workspace: FakeWorkspace) -> Iterator[threading.Event]:
    """Every fake container runs until this is set (set at the end whatever happens)."""
    event = threading.Event()
    workspace.engine.script = lambda inv, n: Outcome(hold=event)
    yield event
    event.set()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """The `containerexec` processes a test started; any left running is killed by PID."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _refused(workspace: FakeWorkspace, target: str, what: str, pid: int) -> None:
    """-o and --bundle are both refused, naming the holder, and write nothing."""
    for flag, dest in (("-o", "run.json"), ("--bundle", "run.tar")):
        out = workspace.cli("runs", "export", target, flag, str(workspace.root / dest))
        assert out.returncode == 2, (out.stdout, out.stderr)
        line = (
            f"{what} is still running (pid {pid} on {socket.gethostname()}); "
            "wait for it, or pass --wait"
        )
        assert out.stderr.strip() == f"Error: {line}", out.stderr
        assert not (workspace.root / dest).exists()


def _waiter(
    workspace: FakeWorkspace, procs: list[subprocess.Popen[str]], target: str, dest: Path
) -> tuple[subprocess.Popen[str], str]:
    """`runs export --wait` in the background, started while `target` runs, and its first
    line on stderr: read before the test lets the run end, so it has seen it running."""
    proc = subprocess.Popen(
        [CONTAINEREXEC, "--runs-dir", str(workspace.runs_dir), "runs", "export", target]
        + ["-o", str(dest), "--wait"],
        cwd=workspace.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    assert proc.stderr is not None
    return proc, proc.stderr.readline()


def _waited(waiter: tuple[subprocess.Popen[str], str], dest: Path) -> dict[str, Any]:
    proc, first = waiter
    _, rest = proc.communicate(timeout=120)
    err = first + rest
    assert proc.returncode == 0, err
    assert re.search(r"is still running \(pid \d+ on .*\): waiting for it to end", err), err
    data: dict[str, Any] = json.loads(dest.read_text())
    return data


def test_exporting_a_running_run_is_refused_and_wait_exports_its_end(
    workspace: FakeWorkspace, go: threading.Event, procs: list[subprocess.Popen[str]]
) -> None:
    spec = workspace.spec(SLEEPER)
    run = Executor(workspace.engine, workspace.store).start(
        load_spec(spec),
        {},
        {"out": str(workspace.root / "out")},
        base=workspace.root,
        spec_path=spec,
        options=RunOptions(default_outputs=workspace.root / "default-outputs"),
    )
    run_id = run.record.run_id
    wait_for(lambda: workspace.store.lock(run_id).held(), what="the run's lock")
    waiter = _waiter(workspace, procs, run_id, workspace.root / "final.json")
    stopped, waiting = _waiter(workspace, procs, run_id, workspace.root / "stopped.json")
    _refused(workspace, run_id, f"run '{run_id}'", os.getpid())
    # Ctrl-C stops waiting: exit 130, one line, nothing written.
    assert "waiting for it to end" in waiting
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=30)
    assert stopped.returncode == 130, err
    assert err == f"stopped waiting for run '{run_id}'; nothing was exported\n"
    assert not (workspace.root / "stopped.json").exists()
    go.set()
    assert run_status(run.wait().record) == 0
    data = _waited(waiter, workspace.root / "final.json")
    # The final states, not a snapshot taken while it ran.
    assert data["run"]["state"] == "succeeded"
    assert [s["state"] for s in data["shards"]] == ["succeeded"]
    # Once it has ended, export needs no flag.
    again = workspace.cli("runs", "export", run_id, "--bundle", str(workspace.root / "b.tar"))
    assert again.returncode == 0, again.stderr


def test_exporting_a_running_pipeline_run_is_refused_and_wait_exports_its_end(
    workspace: FakeWorkspace, go: threading.Event, procs: list[subprocess.Popen[str]]
) -> None:
    workspace.spec(SLEEPER.replace("sleep 5", "sleep 3"), name="sleeper.yaml")
    workspace.spec(
        "name: follower\n"
        "inputs: {src: {type: directory}}\n"
        "outputs: {out: {type: directory}}\n"
        "command: [sh, -c, 'sleep 3; cp \"$0/x\" \"$1/x\"', '${{inputs.src}}',"
        " '${{outputs.out}}']\n",
        name="follower.yaml",
    )
    pipe = workspace.root / "pipe.yaml"
    pipe.write_text(
        "name: napping\njobs:\n"
        "  first: {module: sleeper.yaml}\n"
        "  second: {module: follower.yaml, inputs: {src: '${{jobs.first.outputs.out}}'}}\n"
    )
    ran: list[PipelineResult] = []
    orch = Orchestrator(workspace.engine, workspace.store, grace_s=1)
    driver = threading.Thread(target=lambda: ran.append(orch.run(check_pipeline(pipe), {}, {})))
    driver.start()
    try:
        pipelines = workspace.runs_dir / "pipelines"

        def pipeline_id() -> str | None:
            found = sorted(pipelines.glob("*/pipeline.json")) if pipelines.is_dir() else []
            return found[0].parent.name if found else None

        pid_ = wait_for(pipeline_id, what="the pipeline record")
        wait_for(lambda: workspace.store.ids(), what="a job run")
        waiter = _waiter(workspace, procs, pid_, workspace.root / "final.json")
        _refused(workspace, pid_, f"pipeline run '{pid_}'", os.getpid())
    finally:
        go.set()
        driver.join(timeout=60)
    data = _waited(waiter, workspace.root / "final.json")
    assert pipeline_status(ran[0].record) == 0
    assert data["pipeline"]["state"] == "succeeded"
    assert {j: r["run"]["state"] for j, r in data["runs"].items()} == {
        "first": "succeeded",
        "second": "succeeded",
    }
