"""Repro on the real engine and a real registry: a failed shard is exported, its image's tag is
moved, and the replay here still pulls the recorded digest and fails the same way."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pexpect
import pytest
from click.testing import CliRunner, Result
from helpers import BASE_IMAGE, labelled_containers, local_engine, wait_for
from registry import Registry, free_port

from containerexec.cli import App, cli
from containerexec.engine.docker import DockerEngine
from containerexec.labels import LABEL_REPRO_OF
from containerexec.model.spec import load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.records import ShardRecord
from containerexec.store.tree import RunStore

FATAL = "fatal: record 17 of b.txt is bad"
JOB = """\
import os, sys
value, data, out = sys.argv[1:4]
text = open(os.path.join(data, value + ".txt")).read()
print(f"job {VERSION} shard {value}: {len(text)} bytes", flush=True)
if CHECKS and "bad" in text:
    print(f"fatal: record 17 of {value}.txt is bad", file=sys.stderr, flush=True)
    sys.exit(3)
with open(os.path.join(out, value + ".out"), "w") as f:
    f.write(text.upper())
"""
SPEC = """\
name: cx-repro-job
version: "1"
environment: {{image: "{image}"}}
inputs:
  data: {{type: directory}}
outputs:
  out: {{type: directory}}
command: [python3, /app/job.py, "${{{{shard.value}}}}", "${{{{inputs.data}}}}",
          "${{{{outputs.out}}}}"]
array: {{values: [a, b, c], max_parallel: 3}}
"""


@dataclass(frozen=True)
class Scenario:
    """A failed 3-shard run, exported, whose image tag has since moved to another image."""

    tmp: Path
    data: Path
    export: Path
    run_id: str
    pinned: str
    original_id: str
    moved_id: str
    recorded: ShardRecord


def build(
    engine: DockerEngine, folder: Path, version: int, checks: bool, tag: str, labels: dict[str, str]
) -> str:
    folder.mkdir(parents=True)
    (folder / "job.py").write_text(f"VERSION = {version}\nCHECKS = {checks}\n{JOB}")
    (folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY job.py /app/job.py\n")
    return engine.build(
        str(folder), dockerfile="Dockerfile", tag=tag, buildargs={}, target=None, labels=labels
    ).id


def cx(runs: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        ["--runs-dir", str(runs), *args],
        input=input,
        obj=App(runs_dir=runs, sleep=lambda s: None),
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    eng = local_engine()
    yield eng
    eng.api.close()


@pytest.fixture(scope="module")
def scenario(
    engine: DockerEngine,
    registry: Registry,
    test_session_label: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Scenario:
    tmp = tmp_path_factory.mktemp("repro")
    repo, tag = f"{registry.address}/cx-repro-job", uuid.uuid4().hex[:10]
    original_id = build(engine, tmp / "v1", 1, True, f"{repo}:{tag}", test_session_label)
    engine.push(repo, tag)
    data = tmp / "data"
    data.mkdir()
    for name, text in {"a": "fine\n", "b": "a bad record\n", "c": "also fine\n"}.items():
        (data / f"{name}.txt").write_text(text)
    spec_path = tmp / "job.yaml"
    spec_path.write_text(SPEC.format(image=f"{repo}:{tag}"))
    spec = load_spec(spec_path)
    store = RunStore(tmp / "recorded")
    result = (
        Executor(engine, store)
        .start(
            spec,
            {"data": str(data)},
            {},
            spec_path=spec_path,
            options=RunOptions(labels=test_session_label, default_outputs=tmp / "outputs"),
        )
        .wait()
    )
    assert [s.index for s in result.failed] == [1], result
    exported = cx(store.root, "runs", "export", "last", "-o", str(tmp / "failed.json"))
    assert exported.exit_code == 0, exported.output
    # The tag moves on: no copy of the recorded image is left here, another one has its tag.
    engine.remove_image(original_id)
    assert engine.inspect_image(result.record.image.pinned) is None
    moved_id = build(engine, tmp / "v2", 2, False, f"{repo}:{tag}", test_session_label)
    engine.push(repo, tag)
    return Scenario(
        tmp,
        data,
        tmp / "failed.json",
        result.record.run_id,
        result.record.image.pinned,
        original_id,
        moved_id,
        result.failed[0],
    )


def test_repro_of_an_export_pulls_the_recorded_digest_and_reproduces_exit_3(
    engine: DockerEngine,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    here = tmp_path / "elsewhere"
    result = cx(here, "repro", str(scenario.export))

    assert result.exit_code == 3, result.output
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    assert f"{scenario.pinned} (pulled)" in result.stderr
    assert FATAL in result.stderr
    pulled = engine.inspect_image(scenario.pinned)
    assert pulled is not None and pulled.id == scenario.original_id != scenario.moved_id
    store = RunStore(here)
    rec = store.load_run("last")
    assert rec.repro_of == scenario.run_id and rec.state == "failed" and rec.exit_code == 3
    replayed = store.load_shards(rec.run_id)[1]
    assert scenario.recorded.stderr_tail[-1] == replayed.stderr_tail[-1] == FATAL
    assert f"last line of stderr, same as recorded: {FATAL}" in result.stderr
    listed = cx(here, "runs", "list")
    assert rec.run_id in listed.stdout and rec.run_id.startswith("cx-repro-job-repro-")


def test_keep_leaves_the_replayed_container_stopped_and_names_it(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    result = cx(tmp_path / "runs", "repro", str(scenario.export), "--keep")
    assert result.exit_code == 3, result.output
    name = (
        RunStore(tmp_path / "runs")
        .load_shards(RunStore(tmp_path / "runs").load_run("last").run_id)[1]
        .invocation.name
    )
    try:
        assert f"kept the stopped container {name}" in result.stderr
        state = docker_client.api.inspect_container(name)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 3
    finally:
        engine.remove(name)


def test_print_gives_a_script_that_pulls_by_digest_and_fails_the_same_way(
    engine: DockerEngine,
    scenario: Scenario,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cx(tmp_path / "runs", "repro", str(scenario.export), "--print")
    assert result.exit_code == 0, result.output
    assert f"docker pull {scenario.pinned}" in result.stdout
    [run_line] = [line for line in result.stdout.splitlines() if "docker run" in line]
    assert scenario.pinned in shlex.split(run_line)
    engine.remove_image(scenario.pinned)  # the script pulls it by digest
    script = tmp_path / "repro.sh"
    script.write_text(result.stdout)

    ran = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=120)

    assert ran.returncode == 3, ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == FATAL


def spawn_cx(runs: Path, *args: str) -> pexpect.spawn:
    code = "from containerexec.cli import main; main()"
    return pexpect.spawn(
        sys.executable,
        ["-c", code, "--runs-dir", str(runs), *args],
        env=dict(os.environ),
        encoding="utf-8",
        timeout=90,
        dimensions=(30, 200),
    )


def stop_child(child: pexpect.spawn) -> None:
    """End a spawned containerexec as a user would (Ctrl-C: it stops and removes its
    container), so a failed test leaves nothing behind; then close the terminal."""
    if child.isalive():
        child.kill(signal.SIGINT)
        with contextlib.suppress(pexpect.EOF, pexpect.TIMEOUT):
            child.expect(pexpect.EOF, timeout=60)
    child.close(force=True)


def test_shell_in_a_pseudo_terminal_has_the_shards_set_up(
    docker_client: docker.DockerClient,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    child = spawn_cx(tmp_path / "runs", "repro", str(scenario.export), "--shell")
    try:
        child.expect_exact("the recorded command (paste it to run it):")
        child.expect_exact("python3 /app/job.py b /inputs/data /outputs/out")
        child.expect(r"[$#] ")
        child.sendline("echo shard=$CONTAINEREXEC_SHARD_INDEX; ls /inputs/data | tr '\\n' ,")
        child.expect(r"shard=(\d+)\r\n(\S+)")
        assert child.match.group(1) == "1"
        assert child.match.group(2).startswith("a.txt,b.txt,c.txt,")
        child.sendline("exit 7")
        child.expect(pexpect.EOF)
    finally:
        stop_child(child)
    assert child.exitstatus == 7
    assert labelled_containers(docker_client, LABEL_REPRO_OF, scenario.run_id) == []


def dap(sock: socket.socket, seq: int, command: str, **arguments: Any) -> None:
    body = json.dumps(
        {"seq": seq, "type": "request", "command": command, "arguments": arguments}
    ).encode()
    sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def dap_messages(sock: socket.socket) -> Iterator[dict[str, Any]]:
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        length = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        yield json.loads(buffer[:length])
        buffer = buffer[length:]


def spawn_debug(scenario: Scenario, tmp_path: Path) -> tuple[pexpect.spawn, int]:
    """`containerexec repro EXPORT --debug` on a free port, in a pseudo-terminal."""
    port = free_port()
    child = spawn_cx(
        tmp_path / "runs", "repro", str(scenario.export), "--debug", "--debug-port", str(port)
    )
    return child, port


def debug_containers(
    client: docker.DockerClient, scenario: Scenario, *, running: bool = False
) -> list[dict[str, Any]]:
    return labelled_containers(client, LABEL_REPRO_OF, scenario.run_id, running=running)


def test_debug_publishes_debugpy_on_localhost_and_runs_once_an_editor_attaches(
    docker_client: docker.DockerClient,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    child, port = spawn_debug(scenario, tmp_path)
    try:
        child.expect_exact(f'"port": {port}')
        child.expect_exact('"remoteRoot": "/app"')
        found = wait_for(
            lambda: debug_containers(docker_client, scenario, running=True),
            timeout_s=60,
            what="the debug container",
        )
        bindings = docker_client.api.port(found[0]["Id"], 5678)
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        sock = wait_for(lambda: _dap_session(port), timeout_s=60, what="debugpy to answer")
        with sock:
            events = [m.get("event") for m in dap_messages(sock)]
        assert "process" in events and "terminated" in events
        child.expect_exact("reproduced: exit 3, same as recorded")
        child.expect(pexpect.EOF)
    finally:
        stop_child(child)
    assert child.exitstatus == 3


def test_ctrl_c_while_debugpy_waits_stops_and_removes_its_container(
    docker_client: docker.DockerClient,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    child, port = spawn_debug(scenario, tmp_path)
    try:
        child.expect_exact(f'"port": {port}')  # debugpy answered: it waits for an editor
        wait_for(
            lambda: debug_containers(docker_client, scenario),
            timeout_s=60,
            what="the debug container",
        )
        child.kill(signal.SIGINT)  # to containerexec alone, not to the docker client
        child.expect(pexpect.EOF, timeout=60)
    finally:
        stop_child(child)
    assert child.exitstatus == 130
    assert debug_containers(docker_client, scenario) == []


def _dap_session(port: int) -> socket.socket | None:
    """Attach as an editor would: initialize, attach, configurationDone; None until it listens."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        dap(sock, 1, "initialize", adapterID="debugpy", clientID="containerexec-test")
        messages = dap_messages(sock)
        first = next(messages, None)
        if first is None:  # docker's proxy accepted, but debugpy is not listening yet
            sock.close()
            return None
        dap(sock, 2, "attach", justMyCode=False)
        for message in messages:
            if message.get("event") == "initialized":
                dap(sock, 3, "configurationDone")
                return sock
    except OSError:
        pass
    sock.close()
    return None


def with_image(scenario: Scenario, image: str, folder: Path) -> Path:
    """The exported record, edited as if its shards had run in `image`."""
    data = json.loads(scenario.export.read_text())
    for shard in data["shards"]:
        shard["invocation"]["image"] = image
    path = folder / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_a_digest_gone_from_the_registry_is_one_line_saying_what_to_do(
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    gone = scenario.pinned.split("@")[0] + "@sha256:" + "0" * 64
    result = cx(tmp_path / "runs", "repro", str(with_image(scenario, gone, tmp_path)))

    assert result.exit_code not in (0, 3)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and gone in line and "gone from its registry" in line


def test_an_unreachable_registry_is_one_line_saying_what_to_do(
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    nowhere = f"127.0.0.1:{free_port()}/cx-repro-job@sha256:" + "1" * 64
    result = cx(tmp_path / "runs", "repro", str(with_image(scenario, nowhere, tmp_path)))

    assert result.exit_code not in (0, 3)
    [line] = result.stderr.strip().splitlines()
    assert "does not answer; start it or check that this engine can reach it" in line


def test_a_secret_is_asked_for_used_and_never_written(
    engine: DockerEngine,
    test_session_label: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec_path = tmp_path / "secret.yaml"
    spec_path.write_text(
        f"name: cx-repro-secret\nenvironment: {{image: '{BASE_IMAGE}'}}\n"
        "secrets: [CX_TEST_TOKEN]\n"
        "command: [sh, -c, 'test ${#CX_TEST_TOKEN} = 12 && echo token ok >&2; exit 4']\n"
    )
    spec = load_spec(spec_path)
    recorded = RunStore(tmp_path / "recorded")
    Executor(engine, recorded, secrets={"CX_TEST_TOKEN": "s3cret-v4lue"}).start(
        spec, {}, {}, spec_path=spec_path, options=RunOptions(labels=test_session_label)
    ).wait()
    monkeypatch.delenv("CX_TEST_TOKEN", raising=False)
    export = tmp_path / "secret.json"
    assert cx(recorded.root, "runs", "export", "last", "-o", str(export)).exit_code == 0

    result = cx(tmp_path / "here", "repro", str(export), input="s3cret-v4lue\n")

    assert result.exit_code == 4, result.output
    assert "secret CX_TEST_TOKEN (not stored)" in result.stderr
    assert "last line of stderr, same as recorded: token ok" in result.stderr
    assert "reproduced: exit 4, same as recorded" in result.stdout
    for path in [export, *tmp_path.rglob("*.json"), *tmp_path.rglob("*.log")]:
        assert "s3cret-v4lue" not in path.read_text(), path
