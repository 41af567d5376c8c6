"""The Run handle (issue 9), moved from tests/engine/test_run_handle.py: result() raises the
facts, cancel() stops every container, a shard runs from its run folder alone (the `worker`
command). The handle and the worker are ours; tests/fakes.FakeEngine plays the containers.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome
from helpers import wait_for

from containerexec.errors import ShardFailed
from containerexec.model.invocation import Invocation
from containerexec.model.spec import load_spec
from containerexec.run.executor import Executor, RunOptions

ARRAY = """\
name: handle
inputs:
  fail_on: {type: string, default: none}
outputs:
  out: {type: directory}
array: {range: 3, max_parallel: 3}
command: [sh, -c, 'if [ "$1" = "$2" ]; then echo "broke on $1" >&2; exit 7; fi;
          echo "done $1" > "$0/$1.txt"', "${{outputs.out}}", "${{shard.index}}",
          "${{inputs.fail_on}}"]
"""


def handle(inv: Invocation, n: int) -> Outcome:
    """ARRAY's command: the shard named by fail_on breaks; the others write their index."""
    index, fail_on = inv.argv[-2:]
    if index == fail_on:
        return Outcome(exit_code=7, errors=f"broke on {index}\n".encode(), files={})
    return Outcome(files={f"out/{index}.txt": f"done {index}\n".encode()})


def test_result_raises_shard_failed_with_the_facts_as_fields(workspace: FakeWorkspace) -> None:
    workspace.engine.script = handle
    spec_path = workspace.spec(ARRAY)
    executor = Executor(workspace.engine, workspace.store)
    out = workspace.root / "out"
    run = executor.start(
        load_spec(spec_path), {"fail_on": "1"}, {"out": str(out)}, spec_path=spec_path
    )
    with pytest.raises(ShardFailed) as info:
        run.result()
    err = info.value
    assert (err.module, err.shard, err.shard_count, err.returncode) == ("handle", 1, 3, 7)
    assert err.failure == "exit_code" and err.run_id == run.id
    assert err.argv[:2] == ["sh", "-c"] and err.image == run.image.pinned
    assert err.stderr_tail == ["broke on 1"]
    assert Path(err.log_path).is_file()
    assert f"Reproduce here: containerexec repro {run.id} --shard 1" in str(err)
    assert run.done() and run.state == "failed" and run.exception() is not None
    assert sorted(p.name for p in out.iterdir()) == ["0.txt", "2.txt"]


def test_cancel_through_the_handle_stops_every_container(workspace: FakeWorkspace) -> None:
    workspace.engine.script = lambda inv, n: Outcome(seconds=60)
    spec_path = workspace.spec(
        "name: sleepy\narray: {range: 3, max_parallel: 3}\ncommand: [sleep, '60']\n"
    )
    executor = Executor(workspace.engine, workspace.store)
    run = executor.start(
        load_spec(spec_path), {}, {}, spec_path=spec_path, options=RunOptions(grace_s=1)
    )
    wait_for(lambda: workspace.engine.running == 3, what="3 shards")
    run.cancel(signal.SIGTERM)
    result = run.wait()
    assert result.record.state == "cancelled" and result.record.signal == signal.SIGTERM
    assert workspace.engine.containers({}) == []


def test_a_shard_runs_in_another_process_from_the_run_folder_alone(
    workspace: FakeWorkspace,
) -> None:
    workspace.engine.script = handle
    spec_path = workspace.spec(ARRAY)
    out = workspace.root / "out"
    opts = RunOptions(shards="0", labels={"containerexec.test": "handle"})
    first = (
        Executor(workspace.engine, workspace.store)
        .start(load_spec(spec_path), {}, {"out": str(out)}, spec_path=spec_path, options=opts)
        .wait()
    )
    assert first.record.state == "succeeded" and sorted(p.name for p in out.iterdir()) == ["0.txt"]

    run_dir = workspace.store.run_dir(first.record.run_id)
    worker = workspace.cli("worker", str(run_dir), "--shard", "2")

    assert worker.returncode == 0, worker.stderr
    assert (out / "2.txt").read_text() == "done 2\n"
    shard = workspace.store.load_shards(first.record.run_id)[2]
    assert shard.state == "succeeded" and shard.outputs_committed
    assert shard.invocation.labels == {**shard.invocation.labels, **opts.labels}
    missing = workspace.cli("worker", str(workspace.root / "nowhere"), "--shard", "0")
    assert missing.returncode == 2 and "not a run folder" in missing.stderr
