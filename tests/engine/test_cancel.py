"""Ctrl-C and SIGTERM during a run: containers stopped and removed, nothing committed, exit 130/143.

The real `containerexec` runs in its own session, so the signal reaches only it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, TEST_ENGINE, outputs_of, run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import run_status

# Shard 0 of an array finishes at once; every other shard (and a single run) writes a
# partial output and then waits for a file `go` in its flags input.
SCRIPT = (
    'if [ "$CONTAINEREXEC_SHARD_INDEX" = 0 ] && [ "$CONTAINEREXEC_SHARD_COUNT" -gt 1 ]; then '
    'echo done > "$2/0"; exit 0; fi; '
    'echo partial > "$2/$CONTAINEREXEC_SHARD_INDEX"; while [ ! -e "$1/go" ]; do sleep 0.2; done; '
    'echo done > "$2/$CONTAINEREXEC_SHARD_INDEX"'
)


def spec_text(array: str = "") -> str:
    return (
        "name: patient\ninputs: {flags: {type: directory}}\noutputs: {out: {type: directory}}\n"
        f"command: [bash, -c, {json.dumps(SCRIPT)}, patient, '${{{{inputs.flags}}}}',"
        " '${{outputs.out}}']\n" + (f"array: {array}\n" if array else "")
    )


def start_patient(workspace: Workspace, array: str = "") -> tuple[Any, str, Path]:
    """Start `containerexec run` of the patient module; its process, run id and output folder."""
    target = workspace.root / "out"
    flags = workspace.folder("flags")
    spec = workspace.spec(spec_text(array))
    proc = workspace.start(
        "run", str(spec), "-o", f"out={target}", "-i", f"flags={flags}", "--grace", "2"
    )
    return proc, workspace.run_id(), target


def stop_with(proc: Any, signums: list[signal.Signals]) -> tuple[int, float]:
    """Send the signals (0.1 s apart); the exit status and seconds until it came."""
    started = time.monotonic()
    for signum in signums:
        os.kill(proc.pid, signum)
        time.sleep(0.1)
    code = proc.wait(timeout=60)
    return code, time.monotonic() - started


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
def test_a_signal_during_a_run_stops_the_container_and_commits_nothing(
    workspace: Workspace,
    docker_client: Any,
    signum: signal.Signals,
    status: int,
) -> None:
    proc, run_id, target = start_patient(workspace)
    wait_for(lambda: run_containers(docker_client, run_id, running=True), what="the container")
    code, seconds = stop_with(proc, [signum])
    assert code == status, proc.stderr.read() if proc.stderr else ""
    assert seconds < 10
    assert run_containers(docker_client, run_id) == []
    assert not target.exists()
    assert workspace.record().state == "cancelled"
    assert run_status(workspace.record()) == status
    assert workspace.shards()[0].state == "cancelled"
    assert f"{signum.name}: stopping running containers" in (
        proc.stderr.read() if proc.stderr else ""
    )


@pytest.mark.podman  # CI: on Podman too
@pytest.mark.parametrize("presses", [1, 2], ids=["one-ctrl-c", "two-ctrl-c"])
def test_ctrl_c_with_several_shards_running_cancels_them_all_and_resume_finishes_them(
    workspace: Workspace,
    docker_client: Any,
    presses: int,
) -> None:
    proc, run_id, target = start_patient(workspace, "{range: 4, max_parallel: 4}")
    wait_for(
        lambda: (
            len(run_containers(docker_client, run_id, running=True)) == 3
            and workspace.shards().get(0)
            and workspace.shards()[0].state == "succeeded"
        ),
        what="shard 0 done and 3 shards running",
    )
    code, seconds = stop_with(proc, [signal.SIGINT] * presses)
    assert code == 130, proc.stderr.read() if proc.stderr else ""
    assert seconds < 10
    assert run_containers(docker_client, run_id) == []
    assert sorted(os.listdir(target)) == ["0"]  # only the shard that finished
    assert (target / "0").read_text() == "done\n"
    shards = workspace.shards()
    assert [shards[i].state for i in range(4)] == [
        "succeeded",
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    assert all(not shards[i].outputs_committed for i in (1, 2, 3))
    assert workspace.record().state == "cancelled"
    (workspace.root / "flags" / "go").write_text("")
    resumed = workspace.cli(  # 'go' is a new file in the input: accept the change
        "run", str(workspace.root / "module.yaml"), "--resume", run_id, "--accept-input-changes"
    )
    assert resumed.returncode == 0, resumed.stderr
    after = workspace.shards()
    assert after[0].attempts == shards[0].attempts  # not run again
    assert [after[i].state for i in range(4)] == ["succeeded"] * 4
    assert outputs_of(target) == {str(i): "done\n" for i in range(4)}


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_during_an_image_build_stops_it_at_once_and_leaves_no_build_container(
    workspace: Workspace, docker_client: Any, sig: signal.Signals, status: int
) -> None:
    if TEST_ENGINE == "podman":
        pytest.skip("Podman's API does not list buildah's build containers, which this finds")
    # A RUN step nothing else runs: its build container is found by its command.
    marker = f"sleep 60.{os.getpid()}{time.monotonic_ns() % 100000}"
    workspace.folder("slow", {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN {marker}\n"})
    spec = workspace.spec("name: slowbuild\nenvironment: {build: {context: slow}}\ncommand: [x]\n")

    def building() -> list[Any]:
        found = docker_client.containers.list(all=True, ignore_removed=True)
        return [c for c in found if marker in " ".join(c.attrs["Config"].get("Cmd") or [])]

    proc = workspace.start("run", str(spec))
    wait_for(building, timeout_s=60, what="the build's RUN container")
    code, seconds = stop_with(proc, [sig])
    assert code == status and seconds < 3, (code, seconds)
    assert proc.stderr is not None
    err = proc.stderr.read()
    said = "Interrupted." if sig == signal.SIGINT else "Terminated."
    assert said in err and "Traceback" not in err, err
    wait_for(lambda: not building(), timeout_s=5, what="the build container to be removed")
