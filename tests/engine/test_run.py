"""Issue 2: one module runs in a real container with safe defaults, a record, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, CONTAINEREXEC, run_containers
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.engine.docker import DockerEngine
from containerexec.labels import LABEL_RUN
from containerexec.store.records import SCHEMA_VERSION

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
    engine = DockerEngine.from_env()
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


SECRET_SPEC = """\
name: secretive
secrets: [CX_TEST_TOKEN]
command:
  - python3
  - -c
  - |
    import os, sys
    t = os.environ["CX_TEST_TOKEN"]
    print("out", t)
    print("err", t, file=sys.stderr)
    print("reversed", t[::-1])
    sys.exit(3)
"""


def test_a_secret_value_never_reaches_records_logs_or_output(workspace: Workspace) -> None:
    token = "tok-5ecret-93ab1"
    result = workspace.cli("run", str(workspace.spec(SECRET_SPEC)), env={"CX_TEST_TOKEN": token})
    assert result.returncode == 3, result.stderr
    run_dir = workspace.store.run_dir(workspace.run_id())
    log = (run_dir / "logs" / "000000.log").read_text()
    assert f"reversed {token[::-1]}" in log  # the container did get the value
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert token not in result.stdout and token not in result.stderr
    assert workspace.record().secret_names == ["CX_TEST_TOKEN"]


def test_a_missing_secret_is_refused_before_any_container(workspace: Workspace) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CX_TEST_TOKEN"}
    proc = subprocess.run(
        [*workspace_cmd(workspace), "run", str(workspace.spec(SECRET_SPEC))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "secret 'CX_TEST_TOKEN' is not set; export it" in proc.stderr


def workspace_cmd(ws: Workspace) -> list[str]:
    return [CONTAINEREXEC, "--runs-dir", str(ws.runs_dir)]


FAIL_SPEC = """\
name: failing
command: [python3, -c, "import sys\\nfor i in range(30): print('line', i)\\nsys.exit(7)"]
"""


def test_the_exit_status_is_the_commands_with_last_log_lines_and_log_path(
    workspace: Workspace,
) -> None:
    result = workspace.cli("run", str(workspace.spec(FAIL_SPEC)))
    assert result.returncode == 7
    assert "line 29" in result.stdout  # streamed as it ran
    assert "Module 'failing' failed: exited with 7" in result.stderr
    assert "line 29" in result.stderr and "line 5\n" not in result.stderr  # only the tail
    log_path = workspace.shards()[0].log_path
    assert f"full log: {log_path}" in result.stderr
    assert Path(log_path).read_text().count("line ") == 30
    assert "Traceback" not in result.stderr


def test_a_succeeding_command_exits_0_and_runs_list_and_show_describe_it(
    workspace: Workspace,
) -> None:
    spec = workspace.spec("name: hello\ncommand: [echo, hello world]\n")
    result = workspace.cli("run", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "hello world"
    run_id = workspace.run_id()
    listed = workspace.cli("runs", "list")
    assert listed.returncode == 0
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
        [run_id, "succeeded", "0"]
    ]
    shown = workspace.cli("runs", "show", run_id[:10])
    assert shown.returncode == 0
    assert f"run:      {run_id}" in shown.stdout
    assert "state:    succeeded (exit 0)" in shown.stdout
    assert json.loads(workspace.cli("runs", "show", "last", "--json").stdout)["run_id"] == run_id


def test_a_bad_spec_lists_its_problems_and_runs_nothing(workspace: Workspace) -> None:
    spec = workspace.spec("name: bad\ncomand: [x]\ncommand: [echo, '${{inputs.nope}}']\n")
    result = workspace.cli("run", str(spec))
    assert result.returncode == 2
    assert f"{spec}:3:1: comand: unknown key 'comand'; did you mean 'command'?" in result.stderr
    assert f"{spec}:4:17: command[1]: '${{{{inputs.nope}}}}' names no declared input" in (
        result.stderr
    )
    assert workspace.store.ids() == []


def test_an_image_that_does_not_exist_is_one_clear_line(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: noimage\nenvironment: {image: containerexec/does-not-exist:1}\ncommand: ['true']\n"
    )
    result = workspace.cli("run", str(spec))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: module 'noimage': image 'containerexec/does-not-exist:1'")


def test_an_input_path_that_does_not_exist_is_named(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: needs\ninputs: {data: {type: directory}}\ncommand: [ls, '${{inputs.data}}']\n"
    )
    missing = workspace.root / "no-such-folder"
    result = workspace.cli("run", str(spec), "-i", f"data={missing}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: module 'needs': input 'data' expects a directory at '{missing}', found "
        "nothing; check the path"
    )


def test_a_timeout_stops_the_container_and_is_reported_as_timeout(
    workspace: Workspace,
    docker_client: Any,
) -> None:
    spec = workspace.spec("name: slow\ncommand: [sleep, '60']\nresources: {timeout: 1s}\n")
    started = time.monotonic()
    result = workspace.cli("run", str(spec), "--grace", "1")
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "timed out after 1 s and was stopped" in result.stderr
    shard = workspace.shards()[0]
    assert shard.failure == "timeout" and shard.state == "failed"
    assert run_containers(docker_client, shard.run_id) == []


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


def test_an_unreachable_engine_is_one_line_naming_the_socket(workspace: Workspace) -> None:
    spec = workspace.spec("name: hello\ncommand: [echo, hi]\n")
    result = workspace.cli("run", str(spec), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: No Docker engine answers at unix:///nonexistent.sock")
    assert "make engine" in lines[0] and "DOCKER_HOST" in lines[0]


def test_a_missing_file_output_fails_the_run_and_commits_nothing(workspace: Workspace) -> None:
    spec = workspace.spec(
        "name: lazy\noutputs: {report: {type: file, path: report.txt}}\ncommand: ['true']\n"
    )
    target = workspace.root / "out" / "report.txt"
    result = workspace.cli("run", str(spec), "-o", f"report={target}")
    assert result.returncode == 1
    assert "output 'report': the command did not write report.txt" in result.stderr
    assert workspace.shards()[0].failure == "outputs_missing"
    assert not target.parent.exists()


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
