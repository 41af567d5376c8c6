"""Issue 20, item 7: `runs export` of a run that Slurm still runs is refused in one line
with exit 2, never a silent partial snapshot; with --wait it waits for the end and then
exports the final states. A local run and a pipeline run, held by a process here, are
unit tests on the fake engine: tests/unit/test_export_running_fake.py."""

from __future__ import annotations

import json
import re
from typing import Any

from helpers import run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from tests.engine.test_slurm import array, pushed_base, ws  # noqa: F401


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
