"""Issue 20, item 7: `runs export` of a run (or pipeline run) that is still running is
refused in one line with exit 2, never a silent partial snapshot; with --wait it waits
for the end and then exports the final states."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from helpers import run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from tests.engine.test_slurm import array, pushed_base, ws  # noqa: F401

SLEEPER = (
    "name: sleeper\n"
    "outputs: {out: {type: directory}}\n"
    "command: [sh, -c, 'sleep 5; echo done > \"$0/x\"', '${{outputs.out}}']\n"
)


def _refused(workspace: Workspace, target: str, what: str, pid: int) -> None:
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


def _waiter(workspace: Workspace, target: str, dest: Path) -> subprocess.Popen[str]:
    """`runs export --wait` in the background, started while `target` runs."""
    return workspace.start("runs", "export", target, "-o", str(dest), "--wait")


def _waited(waiter: subprocess.Popen[str], dest: Path) -> dict[str, Any]:
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert re.search(r"is still running \(pid \d+ on .*\): waiting for it to end", err), err
    data: dict[str, Any] = json.loads(dest.read_text())
    return data


def test_exporting_a_running_run_is_refused_and_wait_exports_its_end(
    workspace: Workspace,
) -> None:
    spec = workspace.spec(SLEEPER)
    proc = workspace.start("run", str(spec), "-o", f"out={workspace.root / 'out'}")
    run_id = workspace.run_id()
    wait_for(lambda: workspace.store.lock(run_id).held(), what="the run's lock")
    waiter = _waiter(workspace, run_id, workspace.root / "final.json")
    stopped = _waiter(workspace, run_id, workspace.root / "stopped.json")
    _refused(workspace, run_id, f"run '{run_id}'", proc.pid)
    # Ctrl-C stops waiting: exit 130, one line, nothing written.
    wait_for(lambda: stopped.stderr is not None and stopped.stderr.readline(), what="waiting")
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=30)
    assert stopped.returncode == 130, err
    assert err == f"stopped waiting for run '{run_id}'; nothing was exported\n"
    assert not (workspace.root / "stopped.json").exists()
    data = _waited(waiter, workspace.root / "final.json")
    assert proc.wait(timeout=60) == 0
    # The final states, not a snapshot taken while it ran.
    assert data["run"]["state"] == "succeeded"
    assert [s["state"] for s in data["shards"]] == ["succeeded"]
    # Once it has ended, export needs no flag.
    again = workspace.cli("runs", "export", run_id, "--bundle", str(workspace.root / "b.tar"))
    assert again.returncode == 0, again.stderr


def test_exporting_a_running_pipeline_run_is_refused_and_wait_exports_its_end(
    workspace: Workspace,
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
    proc = workspace.start("pipeline", "run", str(pipe))
    pipelines = workspace.runs_dir / "pipelines"

    def pipeline_id() -> str | None:
        found = sorted(pipelines.glob("*/pipeline.json")) if pipelines.is_dir() else []
        return found[0].parent.name if found else None

    pid_ = wait_for(pipeline_id, what="the pipeline record")
    wait_for(lambda: workspace.store.ids(), what="a job run")
    waiter = _waiter(workspace, pid_, workspace.root / "final.json")
    _refused(workspace, pid_, f"pipeline run '{pid_}'", proc.pid)
    data = _waited(waiter, workspace.root / "final.json")
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert data["pipeline"]["state"] == "succeeded"
    assert {j: r["run"]["state"] for j, r in data["runs"].items()} == {
        "first": "succeeded",
        "second": "succeeded",
    }


def test_exporting_a_detached_slurm_run_is_refused_while_slurm_runs_it(
    ws: Workspace,  # noqa: F811
    pushed_base: str,  # noqa: F811
    docker_client: Any,
) -> None:
    """No process holds a detached run's lock; Slurm's active task is what makes it run."""
    spec = array(ws, pushed_base, n=1, k=1)
    detached = ws.cli("run", str(spec), "--on", "slurm", "--detach", "-i", "pause=8")
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    wait_for(lambda: run_containers(docker_client, run_id, running=True), timeout_s=60, what="it")
    dest = ws.root / "slurm.json"
    refused = ws.cli("runs", "export", run_id, "-o", str(dest))
    assert refused.returncode == 2, refused.stderr
    assert re.fullmatch(
        rf"Error: run '{run_id}' is still running \(Slurm job \d+\); "
        r"wait for it, or pass --wait\n",
        refused.stderr,
    ), refused.stderr
    assert not dest.exists()
    waited = ws.cli("runs", "export", run_id, "-o", str(dest), "--wait", timeout_s=180)
    assert waited.returncode == 0, waited.stderr
    data = json.loads(dest.read_text())
    assert data["run"]["state"] == "succeeded"
    assert [s["state"] for s in data["shards"]] == ["succeeded"]
