"""Issue 4, moved from tests/engine/test_arrays.py: arrays run bounded, with retries, failure
limits, shard selection and resume. Scheduler properties, so tests/fakes.FakeEngine plays the
containers: each test's script says what a shard's command would have done.

A second containerexec on a run in progress is refused here too (the run holds its lock in
this process; another open file of it conflicts as another process's would). Parallel real
containers and SIGKILL of the run stay engine tests.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome

from containerexec.cli.status import run_status
from containerexec.model.invocation import Invocation
from containerexec.model.spec import load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import ShardEvent


def array_spec(
    ws: FakeWorkspace, array: str, script: str, extra: str = "", name: str = "shards"
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


def mount(inv: Invocation, name: str) -> Path:
    """The host folder behind the mount `name` (an input, or an output's staging folder)."""
    [found] = [Path(m.source) for m in inv.mounts if m.name == name]
    return found


def writes_its_index(inv: Invocation, n: int) -> Outcome:
    """`echo > "$2/$CONTAINEREXEC_SHARD_INDEX"`."""
    return Outcome(files={f"out/{inv.shard_index}": b"\n"})


def test_never_more_than_max_parallel_containers_run_at_once(workspace: FakeWorkspace) -> None:
    spec = array_spec(workspace, "{range: 6, max_parallel: 2}", f'sleep 1.5; echo > "$2/{IDX}"')
    workspace.engine.script = lambda inv, n: Outcome(
        seconds=0.2, files={f"out/{inv.shard_index}": b"\n"}
    )
    _, _, result = workspace.run(
        spec,
        {"flags": str(workspace.folder("flags"))},
        {"out": str(workspace.root / "out")},
        run_id="bound-0001",
    )
    assert run_status(result.record) == 0
    assert workspace.engine.max_running == 2, workspace.engine.events
    assert sorted(os.listdir(workspace.root / "out")) == [str(i) for i in range(6)]


def test_the_image_is_resolved_once_per_run_and_every_shard_uses_it(
    workspace: FakeWorkspace,
) -> None:
    spec = array_spec(workspace, "{range: 5}", f'echo > "$2/{IDX}"')
    workspace.engine.script = writes_its_index
    _, _, result = workspace.run(
        spec,
        {"flags": str(workspace.folder("flags"))},
        {"out": str(workspace.root / "out")},
    )
    assert run_status(result.record) == 0
    assert workspace.engine.image_lookups == 1  # the fake pulls and builds nothing
    images = {s.invocation.image for s in workspace.shards().values()}
    assert images == {result.record.image.pinned}


FLAKY = (
    f'files=$(ls -A "$2"); echo "$files" > "$2/seen-{IDX}.txt"; '
    f'if [ -e "$1/ok-{IDX}" ]; then echo done > "$2/result-{IDX}.txt"; exit 0; fi; '
    f'echo junk > "$2/junk-{IDX}.txt"; exit 5'
)


def flaky(inv: Invocation, n: int) -> Outcome:
    """FLAKY: list the output folder it starts in; succeed when its flag exists."""
    i = inv.shard_index
    seen = "\n".join(sorted(os.listdir(mount(inv, "out")))) + "\n"
    files = {f"out/seen-{i}.txt": seen.encode()}
    if (mount(inv, "flags") / f"ok-{i}").exists():
        return Outcome(files={**files, f"out/result-{i}.txt": b"done\n"})
    return Outcome(exit_code=5, files={**files, f"out/junk-{i}.txt": b"junk\n"})


def test_a_shard_that_fails_once_then_succeeds_is_retried_from_an_empty_folder(
    workspace: FakeWorkspace,
) -> None:
    # Marker-file technique: the test creates shard 1's marker when its first attempt fails.
    flags = workspace.folder("flags", {"ok-0": "", "ok-2": ""})
    target = workspace.root / "out"
    junk_visible: list[bool] = []

    def on_event(e: ShardEvent) -> None:
        if e.kind == "retrying":
            junk_visible.append((target / f"junk-{e.index}.txt").exists())
            (flags / f"ok-{e.index}").write_text("")

    workspace.engine.script = flaky
    spec = array_spec(
        workspace, "{range: 3}", FLAKY, "retries: {max_attempts: 3, backoff: {initial: 0.1}}"
    )
    _, _, result = workspace.run(
        spec, {"flags": str(flags)}, {"out": str(target)}, on_event=on_event
    )
    assert run_status(result.record) == 0
    shards = workspace.shards()
    assert [len(shards[i].attempts) for i in range(3)] == [1, 2, 1]
    first = shards[1].attempts[0]
    assert (first.exit_code, first.failure) == (5, "exit_code")
    assert junk_visible == [False]
    assert sorted(os.listdir(target)) == [
        "result-0.txt",
        "result-1.txt",
        "result-2.txt",
        "seen-0.txt",
        "seen-1.txt",
        "seen-2.txt",
    ]
    assert (target / "seen-1.txt").read_text() == "\n"  # the retry saw an empty folder


def test_a_shard_that_always_fails_does_not_stop_the_others(workspace: FakeWorkspace) -> None:
    script = (
        f'if [ "{IDX}" = 2 ]; then echo "shard two is broken" >&2; exit 4; fi; echo > "$2/{IDX}"'
    )

    def always(inv: Invocation, n: int) -> Outcome:
        if inv.shard_index == 2:
            return Outcome(exit_code=4, output=b"shard two is broken\n", files={})
        return writes_its_index(inv, n)

    workspace.engine.script = always
    spec = array_spec(
        workspace,
        "{range: 5, max_parallel: 2}",
        script,
        "retries: {max_attempts: 2, backoff: {initial: 0.1}}",
        name="always",
    )
    flags, target = workspace.folder("flags"), workspace.root / "out"
    result = workspace.cli("run", str(spec), "-i", f"flags={flags}", "-o", f"out={target}")
    assert result.returncode == 1
    assert sorted(os.listdir(target)) == ["0", "1", "3", "4"]
    run_id = workspace.run_id()
    assert "Shard 2/5 of module 'always' failed: exited with 4" in result.stderr
    assert "shard two is broken" in result.stderr
    assert f"Reproduce here: containerexec repro {run_id} --shard 2" in result.stderr
    shards = workspace.shards()
    assert [s.state for s in shards.values()] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]
    assert len(shards[2].attempts) == 2
    shown = workspace.cli("runs", "show", run_id)
    rows = [
        line.split()[:4]
        for line in shown.stdout.splitlines()
        if line.split() and line.split()[0].isdigit()
    ]
    assert rows == [
        ["0", "succeeded", "0", "1"],
        ["1", "succeeded", "0", "1"],
        ["2", "failed", "4", "2"],
        ["3", "succeeded", "0", "1"],
        ["4", "succeeded", "0", "1"],
    ]


def test_max_failed_shards_stops_new_shards(workspace: FakeWorkspace) -> None:
    workspace.engine.script = lambda inv, n: Outcome(exit_code=1, files={})
    spec = array_spec(workspace, "{range: 6, max_parallel: 1, max_failed_shards: 2}", "exit 1")
    _, _, result = workspace.run(
        spec, {"flags": str(workspace.folder("flags"))}, {"out": str(workspace.root / "out")}
    )
    assert run_status(result.record) == 1
    assert sorted(workspace.shards()) == [0, 1]
    assert result.record.counts == {"failed": 2, "pending": 4}


def test_resume_after_a_failure_runs_only_the_failed_shards(workspace: FakeWorkspace) -> None:
    script = f'if [ "{IDX}" = 1 ] && [ ! -e "$1/fixed" ]; then exit 3; fi; echo > "$2/{IDX}"'

    def until_fixed(inv: Invocation, n: int) -> Outcome:
        if inv.shard_index == 1 and not (mount(inv, "flags") / "fixed").exists():
            return Outcome(exit_code=3, files={})
        return writes_its_index(inv, n)

    workspace.engine.script = until_fixed
    spec = array_spec(workspace, "{range: 3}", script)
    flags, target = workspace.folder("flags"), workspace.root / "out"
    first = workspace.cli("run", str(spec), "-i", f"flags={flags}", "-o", f"out={target}")
    assert first.returncode == 1
    run_id = workspace.run_id()
    before = workspace.shards()
    (flags / "fixed").write_text("")  # a changed input: resume runs on it only when told to
    again = workspace.cli("run", str(spec), "--resume", run_id, "--accept-input-changes")
    assert again.returncode == 0, again.stderr
    after = workspace.shards()
    assert workspace.store.ids() == [run_id]
    assert [after[i].attempts for i in (0, 2)] == [before[i].attempts for i in (0, 2)]
    assert after[1].state == "succeeded" and after[1].outputs_committed
    # The failed attempt of the first run is kept, and the resumed one follows it.
    assert [(a.number, a.exit_code) for a in after[1].attempts] == [(1, 3), (2, 0)]
    assert sorted(os.listdir(target)) == ["0", "1", "2"]
    assert workspace.record().state == "succeeded"


def test_shard_option_runs_only_the_named_shards(workspace: FakeWorkspace) -> None:
    workspace.engine.script = writes_its_index
    spec = array_spec(workspace, "{range: 5}", f'echo > "$2/{IDX}"')
    flags, target = workspace.folder("flags"), workspace.root / "out"
    result = workspace.cli(
        "run", str(spec), "-i", f"flags={flags}", "-o", f"out={target}", "--shard", "1,3"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(target)) == ["1", "3"]
    assert sorted(workspace.shards()) == [1, 3]
    assert workspace.record().shards_selected == [1, 3]


def test_a_second_containerexec_on_a_run_in_progress_refuses_naming_the_pid(
    workspace: FakeWorkspace,
) -> None:
    go = threading.Event()
    workspace.engine.script = lambda inv, n: Outcome(hold=go)  # until the flag "go" is set
    spec = array_spec(workspace, "{range: 2}", "exit 0")
    flags = workspace.folder("flags")
    run = Executor(workspace.engine, workspace.store).start(
        load_spec(spec),
        {"flags": str(flags)},
        {},
        spec_path=spec,
        options=RunOptions(default_outputs=workspace.root / "default-outputs"),
    )
    try:
        run_id = run.record.run_id
        started = time.monotonic()
        second = workspace.cli("run", str(spec), "--resume", run_id)
        assert time.monotonic() - started < 15
        assert second.returncode == 1
        assert f"run '{run_id}' is in progress, held by process {os.getpid()}" in second.stderr
    finally:
        go.set()
    assert run_status(run.wait().record) == 0
