"""Issue 22 item 9 against the real engine: two identical commands started together (real
processes) - one runs, the other is refused at once naming it and its process; the same
command again over what it delivered is a cache hit that starts no container. (Issue 25
item 6, an Azure ML pipeline's unchanged rerun to the same -o place: test_azureml.py; the
ledger's refusals of foreign and edited content: tests/unit/test_reruns_fake.py.)"""

from __future__ import annotations

import time

from helpers import files_under
from workspace import Workspace, workspace_fixture  # noqa: F401


def test_two_identical_commands_one_runs_the_other_is_refused_and_a_rerun_is_cached(
    workspace: Workspace,
) -> None:
    spec = workspace.spec(
        "name: slow\noutputs: {out: {type: directory}}\n"
        "command: [sh, -c, 'sleep 4; echo done > $0/result.txt', '${{outputs.out}}']\n"
    )
    args = ("run", str(spec), "-o", "out=out")
    procs = [workspace.start(*args), workspace.start(*args)]
    started = time.monotonic()
    while all(p.poll() is None for p in procs):
        assert time.monotonic() - started < 60, "neither command ended"
        time.sleep(0.05)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    refused_after = time.monotonic() - started
    assert winner.poll() is None  # refused at once, while the other still runs
    assert winner.wait(timeout=120) == 0, winner.stderr.read() if winner.stderr else ""
    err = loser.stderr.read() if loser.stderr else ""
    assert loser.returncode == 1, err
    [run_id] = workspace.store.ids()  # the refused command recorded no run
    assert f"is being written by run '{run_id}', in progress, held by process {winner.pid}" in err
    assert f"output 'out' -> '{workspace.root / 'out'}'" in err and "Traceback" not in err
    assert refused_after < 4  # before the winner's container could have finished

    again = workspace.cli(*args)
    assert again.returncode == 0, again.stderr
    rerun = again.stdout.strip().splitlines()[-1]
    assert rerun != run_id
    [shard] = workspace.store.load_shards(rerun).values()
    assert shard.cached and not shard.attempts  # no container started
    assert files_under(workspace.root / "out") == ["result.txt"]
    assert (workspace.root / "out" / "result.txt").read_text() == "done\n"
