"""`containerexec validate` and `schema` through click's CliRunner: no engine needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner
from helpers import CONTAINEREXEC

from containerexec.cli import cli

ROOT = Path(__file__).resolve().parents[2]
BAD = """\
name: bad
environment: {image: containerexec/base:bookworm}
inputs:
  x: {type: strng}
comand: [echo]
command: [echo, "${{inputs.nope}}"]
name: again
"""


def test_validate_accepts_the_wordcount_example() -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "specs" / "wordcount.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid module 'wordcount' 1.0.0" in result.stdout
    assert "an array" in result.stdout


def test_validate_lists_every_problem_as_file_line_col_and_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {spec}: 4 problems; nothing was run."
    assert lines[1:] == [
        f"{spec}:4:13: inputs.x.type: expected 'file', 'directory', 'string', 'integer', "
        "'number' or 'boolean', got 'strng'",
        f"{spec}:5:1: comand: unknown key 'comand'; did you mean 'command'?",
        f"{spec}:6:17: command[1]: '${{{{inputs.nope}}}}' names no declared input (x)",
        f"{spec}:7:1: name: duplicate key 'name' (first at line 1)",
    ]
    assert "Traceback" not in result.output


def test_validate_of_a_yaml_syntax_error_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "syn.yaml"
    spec.write_text("name: x\ncommand: [a, b\n")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2
    assert f"{spec}:3:1: YAML syntax error: " in result.stderr


def test_validate_of_a_missing_file_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "No such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_validate_needs_no_engine(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    result = CliRunner(env=env).invoke(cli, ["validate", str(ROOT / "specs" / "wordcount.yaml")])
    assert result.exit_code == 0, result.output


def test_schema_is_json_schema_of_module_specs() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"name", "environment", "command", "inputs", "outputs", "array"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_ctrl_c_before_any_container_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # validate blocks opening a FIFO nobody writes to: a Ctrl-C arrives mid-command.
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [CONTAINEREXEC, "validate", str(fifo)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _wchan(proc.pid) not in BLOCKED_ON_FIFO:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted." in err and "Traceback" not in err


BLOCKED_ON_FIFO = ("wait_for_partner", "fifo_open")


def _wchan(pid: int) -> str:
    """The kernel function the process sleeps in (wait_for_partner: opening a FIFO)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""
