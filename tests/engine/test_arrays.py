"""Issue 4: arrays run as parallel containers, bounded, with retries, failure limits and resume."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import outputs_of, run_containers, wait_for
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import run_status
from containerexec.engine.base import ImageInfo
from containerexec.engine.docker import DockerEngine
from containerexec.labels import LABEL_SHARD
from containerexec.run.results import ShardEvent


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


def sample_running(client: Any, run_id: str, stop: threading.Event, out: list[int]) -> None:
    while not stop.is_set():
        out.append(len(run_containers(client, run_id, running=True)))
        time.sleep(0.2)


def test_never_more_than_max_parallel_containers_run_at_once(
    workspace: Workspace,
    docker_client: Any,
) -> None:
    spec = array_spec(workspace, "{range: 6, max_parallel: 2}", f'sleep 1.5; echo > "$2/{IDX}"')
    run_id = f"bound-{uuid.uuid4().hex[:8]}"
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_running, args=(docker_client, run_id, stop, samples))
    sampler.start()
    try:
        _, _, result = workspace.run(
            spec,
            {"flags": str(workspace.folder("flags"))},
            {"out": str(workspace.root / "out")},
            run_id=run_id,
        )
    finally:
        stop.set()
        sampler.join()
    assert run_status(result.record) == 0
    assert max(samples) == 2, samples
    assert sorted(os.listdir(workspace.root / "out")) == [str(i) for i in range(6)]


class CountingEngine(DockerEngine):
    """The real engine, counting image lookups, pulls and builds."""

    calls: Counter[str]

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self.calls["inspect_image"] += 1
        return super().inspect_image(ref)

    def pull(self, ref: str, **kwargs: Any) -> ImageInfo:
        self.calls["pull"] += 1
        return super().pull(ref, **kwargs)

    def build(self, context: str, **kwargs: Any) -> ImageInfo:
        self.calls["build"] += 1
        return super().build(context, **kwargs)


def test_the_image_is_resolved_once_per_run_and_every_shard_uses_it(
    workspace: Workspace,
) -> None:
    engine = CountingEngine(DockerEngine.from_env().api)
    engine.calls = Counter()
    spec = array_spec(workspace, "{range: 5}", f'echo > "$2/{IDX}"')
    try:
        _, _, result = workspace.run(
            spec,
            {"flags": str(workspace.folder("flags"))},
            {"out": str(workspace.root / "out")},
            engine=engine,
        )
    finally:
        engine.api.close()
    assert run_status(result.record) == 0
    assert engine.calls == Counter(inspect_image=1)
    images = {s.invocation.image for s in workspace.shards().values()}
    assert images == {result.record.image.pinned}


FLAKY = (
    f'files=$(ls -A "$2"); echo "$files" > "$2/seen-{IDX}.txt"; '
    f'if [ -e "$1/ok-{IDX}" ]; then echo done > "$2/result-{IDX}.txt"; exit 0; fi; '
    f'echo junk > "$2/junk-{IDX}.txt"; exit 5'
)


def test_a_shard_that_fails_once_then_succeeds_is_retried_from_an_empty_folder(
    workspace: Workspace,
) -> None:
    # Marker-file technique: inputs are read-only inside, but the host folder behind
    # one is not; the test creates shard 1's marker when its first attempt fails.
    flags = workspace.folder("flags", {"ok-0": "", "ok-2": ""})
    target = workspace.root / "out"
    junk_visible: list[bool] = []

    def on_event(e: ShardEvent) -> None:
        if e.kind == "retrying":
            junk_visible.append((target / f"junk-{e.index}.txt").exists())
            (flags / f"ok-{e.index}").write_text("")

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


def test_a_shard_that_always_fails_does_not_stop_the_others(workspace: Workspace) -> None:
    script = (
        f'if [ "{IDX}" = 2 ]; then echo "shard two is broken" >&2; exit 4; fi; echo > "$2/{IDX}"'
    )
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


def test_max_failed_shards_stops_new_shards(workspace: Workspace) -> None:
    spec = array_spec(workspace, "{range: 6, max_parallel: 1, max_failed_shards: 2}", "exit 1")
    _, _, result = workspace.run(
        spec, {"flags": str(workspace.folder("flags"))}, {"out": str(workspace.root / "out")}
    )
    assert run_status(result.record) == 1
    assert sorted(workspace.shards()) == [0, 1]
    assert result.record.counts == {"failed": 2, "pending": 4}


def test_resume_after_a_failure_runs_only_the_failed_shards(workspace: Workspace) -> None:
    script = f'if [ "{IDX}" = 1 ] && [ ! -e "$1/fixed" ]; then exit 3; fi; echo > "$2/{IDX}"'
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


def test_a_second_containerexec_on_a_run_in_progress_refuses_naming_the_pid(
    workspace: Workspace,
    docker_client: Any,
) -> None:
    spec = array_spec(workspace, "{range: 2}", WAIT_FOR_GO)
    flags = workspace.folder("flags")
    proc = workspace.start("run", str(spec), "-i", f"flags={flags}", "--grace", "1")
    run_id = workspace.run_id()
    wait_for(lambda: run_containers(docker_client, run_id, running=True), what="a shard")
    started = time.monotonic()
    second = workspace.cli("run", str(spec), "--resume", run_id)
    assert time.monotonic() - started < 15
    assert second.returncode == 1
    assert f"run '{run_id}' is in progress, held by process {proc.pid}" in second.stderr
    (flags / "go").write_text("")
    assert proc.wait(timeout=60) == 0


def test_shard_option_runs_only_the_named_shards(workspace: Workspace) -> None:
    spec = array_spec(workspace, "{range: 5}", f'echo > "$2/{IDX}"')
    flags, target = workspace.folder("flags"), workspace.root / "out"
    result = workspace.cli(
        "run", str(spec), "-i", f"flags={flags}", "-o", f"out={target}", "--shard", "1,3"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(target)) == ["1", "3"]
    assert sorted(workspace.shards()) == [1, 3]
    assert workspace.record().shards_selected == [1, 3]


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
