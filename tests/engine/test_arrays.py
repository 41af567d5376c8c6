"""Issue 4: arrays on real containers: resume after SIGKILL, shard environments.

Bounds, retries, failure limits, shard selection and a second containerexec refused by the
run lock are unit tests on the fake engine (tests/unit/test_arrays_fake.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import outputs_of, run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import run_status
from containerexec.labels import LABEL_SHARD


def array_spec(
    ws: Workspace, array: str, script: str, extra: str = "", name: str = "shards"
) -> Path:
    """A module whose shards run `script` in bash with $1 = flags input, $2 = output folder."""
    return ws.spec(
        f"name: {name}\n"
        "inputs: {flags: {type: directory}}\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [bash, -c, {json.dumps(script)}, {name}, '${{{{inputs.flags}}}}',"
        " '${{outputs.out}}']\n"
        f"array: {array}\n{extra}"
    )


IDX = "$CONTAINEREXEC_SHARD_INDEX"
WAIT_FOR_GO = f'while [ ! -e "$1/go" ]; do sleep 0.2; done; echo ok > "$2/{IDX}"'


def test_resume_after_sigkill_removes_leftover_containers_and_never_doubles_a_shard(
    workspace: Workspace,
    docker_client: Any,
) -> None:
    spec = array_spec(workspace, "{range: 3, max_parallel: 3}", WAIT_FOR_GO)
    flags, target = workspace.folder("flags"), workspace.root / "out"
    proc = workspace.start("run", str(spec), "-i", f"flags={flags}", "-o", f"out={target}")
    run_id = workspace.run_id()
    wait_for(
        lambda: len(run_containers(docker_client, run_id, running=True)) == 3,
        what="3 running shards",
    )
    left = run_containers(docker_client, run_id)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(run_containers(docker_client, run_id)) == 3  # the dead run left them
    (flags / "go").write_text("")
    per_shard: list[Counter[str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            per_shard.append(
                Counter(c["Labels"][LABEL_SHARD] for c in run_containers(docker_client, run_id))
            )
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        # no unlock needed; 'go' is a new file in the input, so the change is accepted
        again = workspace.cli("run", str(spec), "--resume", run_id, "--accept-input-changes")
    finally:
        stop.set()
        sampler.join()
    assert again.returncode == 0, again.stderr
    assert max(max(c.values(), default=0) for c in per_shard) == 1
    assert run_containers(docker_client, run_id) == []
    old_ids = {c["Id"] for c in left}
    new_ids = {a.container_id for s in workspace.shards().values() for a in s.attempts}
    assert not old_ids & new_ids
    assert sorted(os.listdir(target)) == ["0", "1", "2"]


ENV_SCRIPT = (
    'printf "%s|%s|%s|%s" "$CONTAINEREXEC_SHARD_INDEX" "$CONTAINEREXEC_SHARD_VALUE" '
    '"$CONTAINEREXEC_SHARD_COUNT" "$3" > "$2/$CONTAINEREXEC_SHARD_INDEX"'
)


def env_spec(ws: Workspace, array: str) -> Path:
    return ws.spec(
        "name: envs\ninputs: {data: {type: directory}, list: {type: file, optional: true}}\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [bash, -c, {json.dumps(ENV_SCRIPT)}, envs, unused, '${{{{outputs.out}}}}',"
        " '${{shard.value}}']\n"
        f"array: {array}\n"
    )


def test_glob_shards_get_sorted_stable_indices_and_their_environment(
    workspace: Workspace,
) -> None:
    data = workspace.folder("data")
    for name in ("c.txt", "a.txt", "b b.txt", "skip.dat"):  # created out of order
        (data / name).write_text(name)
    spec = env_spec(workspace, "{glob: {input: data, pattern: '*.txt'}}")
    _, _, result = workspace.run(spec, {"data": str(data)}, {"out": str(workspace.root / "o")})
    assert run_status(result.record) == 0
    assert outputs_of(workspace.root / "o") == {
        "0": "0|a.txt|3|a.txt",
        "1": "1|b b.txt|3|b b.txt",
        "2": "2|c.txt|3|c.txt",
    }


def test_lines_arrays_run_one_shard_per_non_empty_line(workspace: Workspace) -> None:
    data = workspace.folder("data", {"list.txt": "alpha\n\nbeta gamma; delta\n"})
    spec = env_spec(workspace, "{lines: {input: list}}")
    _, _, result = workspace.run(
        spec,
        {"data": str(data), "list": str(data / "list.txt")},
        {"out": str(workspace.root / "o")},
    )
    assert run_status(result.record) == 0
    assert outputs_of(workspace.root / "o") == {
        "0": "0|alpha|2|alpha",
        "1": "1|beta gamma; delta|2|beta gamma; delta",
    }
