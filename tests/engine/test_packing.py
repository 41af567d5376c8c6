"""Issue 15: shards packed K to a container, each value keeping everything a shard has."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, files_under, local_engine, run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import run_status
from containerexec.engine.docker import DockerEngine
from containerexec.labels import LABEL_SHARD
from containerexec.model.invocation import Invocation
from containerexec.run.packing.planner import PackingUnsupported

IDX = "$CONTAINEREXEC_SHARD_INDEX"
WEIRD = ["a b", "it's", 'q"uote', "semi;colon", "new\nline", "$HOME", "*"]


class CountingEngine(DockerEngine):
    """The real engine, keeping the Invocation of every container it creates."""

    created: list[Invocation]

    def create(self, inv: Invocation, *, secrets: Any) -> str:
        self.created.append(inv)
        return super().create(inv, secrets=secrets)


def counting_engine() -> CountingEngine:
    engine = local_engine()  # Docker's or Podman's: counting is mixed into its own class
    engine.__class__ = type("Counting", (CountingEngine, type(engine)), {})
    assert isinstance(engine, CountingEngine)
    engine.created = []
    return engine


def packed_spec(ws: Workspace, array: str, script: str, extra: str = "") -> Path:
    """A module running `script` in sh with $1 = the flags folder, $2 = the output folder."""
    return ws.spec(
        "name: packed\n"
        "inputs: {flags: {type: directory}}\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [sh, -c, {json.dumps(script)}, packed, '${{{{inputs.flags}}}}',"
        " '${{outputs.out}}', '${{shard.value}}']\n"
        "env: {VALUE: '${{shard.value}}'}\n"
        f"array: {array}\n{extra}"
    )


def run(ws: Workspace, spec: Path, engine: DockerEngine | None = None, **options: Any) -> Any:
    flags = ws.root / "flags"
    flags.mkdir(exist_ok=True)
    return ws.run(
        spec, {"flags": str(flags)}, {"out": str(ws.root / "out")}, engine=engine, **options
    )


def shard_containers(engine: CountingEngine) -> list[Invocation]:
    return [i for i in engine.created if i.labels.get(LABEL_SHARD) != "probe"]


@pytest.mark.podman  # CI: on Podman too
def test_values_packed_into_one_container_keep_argv_env_log_outputs_and_record(
    workspace: Workspace,
) -> None:
    script = (
        f'printf "%s|%s\\n" "$3" "$VALUE"; echo "err {IDX}" >&2; '
        f'printf "%s" "$3" > "$2/{IDX}"; echo leftover > /tmp/x-{IDX}; ls /tmp'
    )
    values = json.dumps(WEIRD)
    spec = packed_spec(workspace, f"{{values: {values}, batch_size: 4, max_parallel: 1}}", script)
    engine = counting_engine()
    try:
        _, _, result = run(workspace, spec, engine)
    finally:
        engine.api.close()
    assert run_status(result.record) == 0
    # 7 values in batches of 4: two containers instead of seven (and one probe).
    assert len(shard_containers(engine)) == 2
    out = workspace.root / "out"
    assert {int(n): (out / n).read_text() for n in os.listdir(out)} == dict(enumerate(WEIRD))
    shards = workspace.shards()
    for i, value in enumerate(WEIRD):
        rec = shards[i]
        assert rec.state == "succeeded" and rec.outputs_committed and rec.exit_code == 0
        log = Path(rec.log_path).read_text()
        # Its own log: its stdout, then its stderr; /tmp is empty for each value again.
        assert log == f"{value}|{value}\nx-{i}\nerr {i}\n"
        # The record keeps the value's own Invocation, as an unpacked run would: repro
        # runs exactly that in its own container.
        inv = rec.invocation
        assert inv.name == f"cx-{result.record.run_id}-{i}"
        assert inv.argv[-1] == value and inv.env["VALUE"] == value
        assert [m.source for m in inv.mounts if m.kind == "output"] == [
            str(workspace.store.staging(result.record.run_id, i) / "out")
        ]
        assert len(rec.attempts) == 1 and rec.attempts[0].container_id
    assert not (workspace.store.run_dir(result.record.run_id) / "batches" / "000000").exists()


def test_values_that_print_nothing_share_files_and_each_log_is_its_own(
    workspace: Workspace,
) -> None:
    """The driver reuses one stdout/stderr pair while values print nothing (a file creation
    costs more than running `true`) and moves on to a new pair after a value that printed."""
    prints = ["", "echo o1", "", "echo e3 >&2", "echo o4; echo e4 >&2", "", "echo o6"]
    script = " ".join(f'if [ "{IDX}" = {i} ]; then {p}; fi;' for i, p in enumerate(prints) if p)
    spec = packed_spec(workspace, "{range: 7, batch_size: 7}", script + " :")
    _, _, result = run(workspace, spec)
    assert run_status(result.record) == 0
    shards = workspace.shards()
    logs = [Path(shards[i].log_path).read_text() for i in range(7)]
    assert logs == ["", "o1\n", "", "e3\n", "o4\ne4\n", "", "o6\n"]


def test_a_failed_value_is_retried_alone_and_the_others_are_not_rerun(
    workspace: Workspace,
) -> None:
    script = f'echo "try" >> /tmp/n; if [ "{IDX}" = 1 ]; then exit 3; fi; echo > "$2/{IDX}"'
    spec = packed_spec(
        workspace,
        "{range: 3, batch_size: 3, max_parallel: 1}",
        script,
        "retries: {max_attempts: 2, backoff: {initial: 0.1}}",
    )
    engine = counting_engine()
    try:
        _, _, result = run(workspace, spec, engine)
    finally:
        engine.api.close()
    assert result.record.state == "failed"
    names = [i.name for i in shard_containers(engine)]
    run_id = result.record.run_id
    assert names == [f"cx-{run_id}-b0", f"cx-{run_id}-1"]  # the batch, then shard 1 alone
    shards = workspace.shards()
    assert [len(shards[i].attempts) for i in range(3)] == [1, 2, 1]
    assert [(a.number, a.exit_code, a.failure) for a in shards[1].attempts] == [
        (1, 3, "exit_code"),
        (2, 3, "exit_code"),
    ]
    log = Path(shards[1].log_path)
    assert log.with_name(f"{log.stem}.attempt1.log").is_file()  # the batch attempt's log kept
    assert sorted(os.listdir(workspace.root / "out")) == ["0", "2"]


def test_a_value_past_its_timeout_is_stopped_and_the_rest_of_its_batch_runs(
    workspace: Workspace,
) -> None:
    script = f'if [ "{IDX}" = 1 ]; then sleep 60; fi; echo > "$2/{IDX}"'
    spec = packed_spec(
        workspace,
        "{range: 3, batch_size: 3, max_parallel: 1}",
        script,
        "resources: {timeout: 2s}",
    )
    t0 = time.monotonic()
    _, _, result = run(workspace, spec, grace_s=1.0)
    assert time.monotonic() - t0 < 30
    shards = workspace.shards()
    assert [shards[i].state for i in range(3)] == ["succeeded", "failed", "succeeded"]
    assert shards[1].failure == "timeout", shards[1]
    assert len({shards[i].attempts[0].container_id for i in range(3)}) == 1  # one container
    assert "timed out after 2 s" in (shards[1].message or "")
    assert sorted(os.listdir(workspace.root / "out")) == ["0", "2"]
    assert result.record.state == "failed"


def test_an_oom_is_charged_to_the_value_that_ran_and_the_batch_goes_on(
    workspace: Workspace,
) -> None:
    script = (
        f'if [ "{IDX}" = 1 ]; then python3 -c "x = bytearray(400 << 20)"; fi; echo > "$2/{IDX}"'
    )
    spec = packed_spec(
        workspace,
        "{range: 3, batch_size: 3, max_parallel: 1}",
        script,
        "resources: {memory: 64m}",
    )
    run(workspace, spec)
    shards = workspace.shards()
    assert [shards[i].state for i in range(3)] == ["succeeded", "failed", "succeeded"]
    assert shards[1].failure == "oom" and shards[1].oom_killed
    assert len(shards[1].attempts) == 1  # an OOM is not retried by default


def test_values_not_started_when_the_container_dies_go_back_to_the_queue_uncounted(
    workspace: Workspace, docker_client: Any
) -> None:
    # Shard 0 prints nothing, so shard 1 writes to the files shard 0 was given.
    script = f'if [ "{IDX}" = 1 ]; then echo dying >&2; sleep 60; fi; echo > "$2/{IDX}"'
    spec = packed_spec(workspace, "{range: 4, batch_size: 4, max_parallel: 1}", script)
    run_id = "packkill-1"
    killed: list[str] = []

    def kill_batch() -> None:
        wait_for(lambda: workspace.store.shard_path(run_id, 0).is_file(), what="shard 0's record")
        time.sleep(0.5)  # shard 1 is running now
        for c in run_containers(docker_client, run_id, running=True):
            docker_client.api.kill(c["Id"])
            killed.append(c["Labels"][LABEL_SHARD])

    killer = threading.Thread(target=kill_batch)
    killer.start()
    try:
        run(workspace, spec, run_id=run_id)
    finally:
        killer.join()
    assert killed == ["0-3"]
    shards = workspace.shards()
    assert [shards[i].state for i in range(4)] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert shards[1].failure == "killed"
    assert [Path(shards[i].log_path).read_text() for i in (0, 1)] == ["", "dying\n"]
    # 2 and 3 never started in the killed container: one attempt each, in the next batch.
    assert [len(shards[i].attempts) for i in (2, 3)] == [1, 1]
    assert shards[2].attempts[0].container_id != shards[0].attempts[0].container_id


def test_shard_selection_resume_and_auto(workspace: Workspace) -> None:
    script = f'if [ "{IDX}" = 2 ] && [ ! -e "$1/fixed" ]; then exit 3; fi; echo > "$2/{IDX}"'
    spec = packed_spec(workspace, "{range: 20, batch_size: auto, max_parallel: 2}", script)
    flags, target = workspace.folder("flags"), workspace.root / "out"
    first = workspace.cli(
        "run", str(spec), "--shard", "1-16", "-i", f"flags={flags}", "-o", f"out={target}"
    )
    assert first.returncode == 1, first.stderr
    # auto: 16 selected shards on 2 containers, about 2 batches each -> 4 per batch.
    assert "packing: up to 4 shards per container (batch_size: auto)" in first.stderr
    run_id = workspace.run_id()
    before = workspace.shards()
    assert sorted(before) == list(range(1, 17))
    assert len({rec.attempts[0].container_id for rec in before.values()}) == 4
    (flags / "fixed").write_text("")
    again = workspace.cli(
        "run", str(spec), "--shard", "1-16", "--resume", run_id, "--accept-input-changes"
    )
    assert again.returncode == 0, again.stderr
    after = workspace.shards()
    others = [i for i in range(1, 17) if i != 2]
    assert [after[i].attempts for i in others] == [before[i].attempts for i in others]
    assert [(a.number, a.exit_code) for a in after[2].attempts] == [(1, 3), (2, 0)]
    assert sorted(os.listdir(target), key=int) == [str(i) for i in range(1, 17)]


def test_the_batch_size_flag_packs_and_says_so(workspace: Workspace) -> None:
    spec = packed_spec(workspace, "{range: 6, max_parallel: 2}", f'echo > "$2/{IDX}"')
    flags, target = workspace.folder("flags"), workspace.root / "out"
    done = workspace.cli(
        "run", str(spec), "--batch-size", "3", "-i", f"flags={flags}", "-o", f"out={target}"
    )
    assert done.returncode == 0, done.stderr
    assert "packing: up to 3 shards per container" in done.stderr
    assert sorted(os.listdir(target)) == [str(i) for i in range(6)]
    ids = {rec.attempts[0].container_id for rec in workspace.shards().values()}
    assert len(ids) == 2
    bad = workspace.cli("run", str(spec), "--batch-size", "0", "-i", f"flags={flags}")
    assert bad.returncode == 2 and "--batch-size '0'" in bad.stderr


def test_an_image_without_a_shell_is_refused_before_any_shard_container(
    workspace: Workspace,
) -> None:
    context = workspace.folder("noshell", {"Dockerfile": "FROM scratch\nCOPY hello /hello\n"})
    (context / "hello").write_text("not a shell\n")
    spec = workspace.spec(
        "name: noshell\n"
        "environment: {build: {context: noshell}}\n"
        "command: [/hello, '${{shard.value}}']\n"
        "array: {range: 4, batch_size: 2}\n"
    )
    engine = counting_engine()
    try:
        with pytest.raises(PackingUnsupported) as info:
            workspace.run(spec, engine=engine)
    finally:
        engine.api.close()
    assert shard_containers(engine) == []
    text = str(info.value)
    assert "has no /bin/sh" in text and "--batch-size 1" in text
    assert workspace.record().state == "failed"
    assert Counter(c.labels.get(LABEL_SHARD) for c in engine.created) == Counter(probe=1)


def slow_second_value(ws: Workspace) -> Path:
    """4 values in one container; value 1 sleeps, so a stop finds 0 done and 2, 3 not started."""
    script = f'if [ "{IDX}" = 1 ]; then sleep 60; fi; echo > "$2/{IDX}"'
    return packed_spec(ws, "{range: 4, batch_size: 4, max_parallel: 1}", script)


@pytest.mark.parametrize(
    ("stop", "status", "state"),
    [("ctrl-c", 130, "cancelled"), ("deadline", 124, "failed")],
)
def test_a_stop_during_a_batch_keeps_the_values_done_and_leaves_no_container(
    workspace: Workspace, docker_client: Any, stop: str, status: int, state: str
) -> None:
    spec = slow_second_value(workspace)
    flags, out = workspace.folder("flags"), workspace.root / "out"
    args = ["run", str(spec), "-i", f"flags={flags}", "-o", f"out={out}", "--grace", "1"]
    proc = workspace.start(*args, *(["--deadline", "6"] if stop == "deadline" else []))
    run_id = workspace.run_id()
    wait_for(lambda: workspace.store.shard_path(run_id, 0).is_file(), what="value 0's record")
    if stop == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert run_containers(docker_client, run_id) == []
    shards = workspace.shards(run_id)
    assert sorted(shards) == [0, 1]  # 2 and 3 never started: no record, not counted
    assert shards[0].state == "succeeded" and shards[1].state == "cancelled"
    assert os.listdir(out) == ["0"]
    rec = workspace.record(run_id)
    assert rec.state == state and rec.counts == {
        "cancelled": 1,
        "pending": 2,
        "succeeded": 1,
    }
    if stop == "deadline":
        assert (rec.reason or "").startswith("deadline_exceeded")


@pytest.mark.parametrize(
    ("tool", "extra"),
    [("timeout", "resources: {timeout: 30s}\n"), ("setsid", "")],  # setsid: issue 20
)
def test_an_image_without_a_tool_packing_needs_is_refused(
    workspace: Workspace, test_session_label: dict[str, str], tool: str, extra: str
) -> None:
    (label,) = test_session_label.items()  # the session removes the image it builds
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL {label[0]}={label[1]}\nRUN rm /usr/bin/{tool}\n"
    workspace.folder("notool", {"Dockerfile": dockerfile})
    spec = workspace.spec(
        "name: notool\n"
        "environment: {build: {context: notool}}\n"
        "command: [sh, -c, 'echo \"$0\"', '${{shard.value}}']\n"
        f"{extra}"
        "array: {range: 4, batch_size: 2}\n"
    )
    refused = workspace.cli("run", str(spec))
    assert refused.returncode == 1, refused.stderr
    assert f"no `{tool}` in the image" in refused.stderr, refused.stderr
    assert "--batch-size 1" in refused.stderr and "Traceback" not in refused.stderr
    assert workspace.shards() == {}  # refused before any shard ran
    unpacked = workspace.cli("run", str(spec), "--batch-size", "1")
    assert unpacked.returncode == 0, unpacked.stderr


@pytest.mark.parametrize("where", ["same-fs", "tmpfs"])
def test_packed_values_merge_nested_folders_and_let_no_collision_or_host_file_out(
    workspace: Workspace, tmpfs: Path, where: str
) -> None:
    # Each value writes into the same nested folder; 2 also writes 0's file, 3 links to a
    # host file, 4 makes a FIFO: as unpacked, only 0 and 1 land, and nothing else.
    script = (
        f'mkdir -p "$2/kept/deep"; echo {IDX} > "$2/kept/deep/{IDX}";'
        f' case {IDX} in 2) echo again > "$2/kept/deep/0";; 3) ln -s /etc/shadow "$2/leak";;'
        ' 4) mkfifo "$2/pipe";; esac'
    )
    spec = packed_spec(workspace, "{range: 5, batch_size: 5, max_parallel: 1}", script)
    flags = workspace.folder("flags")
    out = (workspace.root if where == "same-fs" else tmpfs) / "out"
    _, _, result = workspace.run(spec, {"flags": str(flags)}, {"out": str(out)})
    assert run_status(result.record) == 1
    shards = workspace.shards()
    assert [shards[i].failure for i in range(5)] == [
        None,
        None,
        "output_collision",
        "unsafe_output",
        "unsafe_output",
    ]
    assert len({shards[i].attempts[0].container_id for i in range(5)}) == 1  # one container
    assert files_under(out) == ["kept/deep/0", "kept/deep/1"]
    assert (out / "kept" / "deep" / "0").read_text() == "0\n"
