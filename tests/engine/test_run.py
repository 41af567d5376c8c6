"""Issue 2: one module runs in a real container with safe defaults, a record, and clear errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, local_engine, run_containers
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.labels import LABEL_RUN
from containerexec.store.records import SCHEMA_VERSION

pytestmark = pytest.mark.podman  # CI runs these on Podman too: the lifecycle, failure kinds

WEIRD = 'it\'s a "test"; rm -rf / && echo $HOME\nsecond line'

PROBE = r"""
import errno, json, os, sys, time

def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]

status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
report = {
    "argv": sys.argv[1:],
    "uid": os.getuid(),
    "gid": os.getgid(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "write_input": try_write(sys.argv[2] + "/new.txt"),
    "write_root": try_write("/probe.txt"),
    "write_tmp": try_write("/tmp/probe.txt"),
    "input_text": open(sys.argv[2] + "/in.txt").read(),
}
with open(sys.argv[1], "w") as f:
    json.dump(report, f)
print("report written", flush=True)
"""

PROBE_SPEC = """\
name: probe
inputs:
  tools: {type: directory}
  data: {type: directory}
  text: {type: string}
outputs:
  report: {type: file, path: report.json}
command: [python3, "${{inputs.tools}}/probe.py", "${{outputs.report}}", "${{inputs.data}}",
          "${{inputs.text}}", "x=${{inputs.text}}"]
env: {GREETING: hello}
resources: {cpus: 1, memory: 128m, timeout: 60s}
"""


@pytest.fixture(scope="module")
def probe(
    tmp_path_factory: pytest.TempPathFactory, test_session_label: dict[str, str], docker_client: Any
) -> Iterator[dict[str, Any]]:
    """Run the probe module once; what it saw inside and what we saw outside, during and after."""
    ws = Workspace(tmp_path_factory.mktemp("probe"), test_session_label)
    tools = ws.folder("tools", {"probe.py": PROBE})
    data = ws.folder("data", {"in.txt": "input data"})
    target = ws.root / "out" / "report.json"
    engine = local_engine()
    during: dict[str, Any] = {}

    def on_line(index: int, stream: str, line: str) -> None:
        # The container has printed, so it exists and has not been removed yet.
        run_id = ws.store.ids()[0]
        during["containers"] = engine.containers({LABEL_RUN: run_id})
        during["target_exists"] = target.exists()
        during["line"] = line

    try:
        spec, bindings, result = ws.run(
            ws.spec(PROBE_SPEC),
            {"tools": str(tools), "data": str(data), "text": WEIRD},
            {"report": str(target)},
            engine=engine,
            on_line=on_line,
        )
    finally:
        engine.api.close()
    yield {
        "ws": ws,
        "result": result,
        "during": during,
        "target": target,
        "data": data,
        "report": json.loads(target.read_text()),
        "shard": ws.shards()[0],
        "left": run_containers(docker_client, result.record.run_id),
    }


def test_a_value_with_spaces_quotes_semicolons_and_newlines_stays_one_argv_element(
    probe: dict[str, Any],
) -> None:
    assert probe["report"]["argv"][2:] == [WEIRD, f"x={WEIRD}"]


def test_inputs_are_mounted_read_only(probe: dict[str, Any]) -> None:
    assert probe["report"]["input_text"] == "input data"
    assert probe["report"]["write_input"] == "EROFS"
    assert not (probe["data"] / "new.txt").exists()


def test_root_filesystem_is_read_only_and_tmp_is_writable(probe: dict[str, Any]) -> None:
    assert probe["report"]["write_root"] == "EROFS"
    assert probe["report"]["write_tmp"] == "ok"


def test_network_is_off_only_loopback_exists(probe: dict[str, Any]) -> None:
    assert probe["report"]["interfaces"] == ["lo"]


def test_capabilities_are_dropped_and_no_new_privileges_is_set(probe: dict[str, Any]) -> None:
    assert int(probe["report"]["cap_eff"], 16) == 0
    assert probe["report"]["no_new_privs"] == "1"


def test_the_container_runs_as_the_callers_uid_and_gid(probe: dict[str, Any]) -> None:
    assert (probe["report"]["uid"], probe["report"]["gid"]) == (os.getuid(), os.getgid())


def test_outputs_appear_only_after_exit_0_and_belong_to_the_caller(probe: dict[str, Any]) -> None:
    assert probe["during"]["line"] == "report written"
    assert probe["during"]["target_exists"] is False
    st = probe["target"].stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert probe["shard"].outputs_committed


def test_the_container_is_labelled_with_its_run_and_removed_afterwards(
    probe: dict[str, Any],
) -> None:
    run_id = probe["result"].record.run_id
    [container] = probe["during"]["containers"]
    assert container.labels[LABEL_RUN] == run_id
    assert container.labels["containerexec.module"] == "probe"
    assert container.labels["containerexec.shard"] == "0"
    assert probe["left"] == []


def test_the_run_record_holds_image_argv_env_mounts_limits_exit_and_times(
    probe: dict[str, Any],
) -> None:
    rec, shard = probe["result"].record, probe["shard"]
    inv = shard.invocation
    assert rec.state == "succeeded" and rec.exit_code == 0
    assert rec.image.ref == BASE_IMAGE and rec.image.id.startswith("sha256:")
    assert inv.image == rec.image.pinned
    assert inv.argv[0] == "python3" and inv.argv[-1] == f"x={WEIRD}"
    assert inv.env["GREETING"] == "hello"
    assert {(m.name, m.read_only) for m in inv.mounts} == {
        ("tools", True),
        ("data", True),
        ("report", False),
    }
    assert inv.limits.memory_bytes == 128 * 1024**2 and inv.limits.timeout_s == 60
    assert inv.limits.cpus == 1
    assert shard.exit_code == 0 and shard.oom_killed is False
    [attempt] = shard.attempts
    assert rec.started_at <= attempt.started_at <= attempt.ended_at <= (rec.ended_at or 0)
    assert Path(shard.log_path).read_text() == "report written\n"
    on_disk = json.loads(probe["result"].record_path.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION


def test_an_image_that_does_not_exist_is_one_clear_line(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: noimage\nenvironment: {image: containerexec/does-not-exist:1}\ncommand: ['true']\n"
    )
    result = workspace.cli("run", str(spec))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: module 'noimage': image 'containerexec/does-not-exist:1'")


def test_exceeding_the_memory_limit_is_reported_as_oom_killed(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: hungry\nresources: {memory: 64m}\n"
        "command: [python3, -c, 'b = bytearray(400 * 1024 * 1024)']\n"
    )
    result = workspace.cli("run", str(spec))
    assert result.returncode == 137
    assert "(OOM-killed)" in result.stderr
    shard = workspace.shards()[0]
    assert shard.oom_killed and shard.failure == "oom"
    assert len(shard.attempts) == 1  # an OOM is not retried by default


def test_a_command_that_does_not_exist_exits_127_and_is_not_retried(
    workspace: Workspace,
) -> None:
    spec = workspace.spec(
        "name: typo\ncommand: [no-such-program, x]\n"
        "retries: {max_attempts: 3, backoff: {initial: 0.1}}\n"
    )
    result = workspace.cli("run", str(spec))
    assert result.returncode == 127
    assert "(command not found)" in result.stderr
    shard = workspace.shards()[0]
    assert shard.failure == "command_not_found" and len(shard.attempts) == 1
