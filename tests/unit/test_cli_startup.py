"""Start-up: the command line imports a command's module only when that command runs.

`--help` lists every command from cli.COMMANDS without importing it, so each summary
there must be the first sentence of the command's own help (checked here).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from containerexec.cli import COMMANDS, cli
from containerexec.cli.lazy import load

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("docker", "requests", "containerexec.run", "containerexec.authoring", "rich")


def loaded_after(code: str) -> list[str]:
    """The heavy modules loaded once `code` ran in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_neither_docker_nor_the_run_core() -> None:
    assert loaded_after("import containerexec.cli") == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["validate", "specs/wordcount.yaml"]])
def test_light_commands_load_neither_docker_nor_the_run_core(args: list[str]) -> None:
    code = (
        "from containerexec.cli import cli\n"
        f"try:\n    cli.main({args!r}, prog_name='containerexec')\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code"
    )
    assert loaded_after(code) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_command_is_where_the_table_says_with_that_summary(name: str) -> None:
    entry = COMMANDS[name]
    command = load(entry)
    assert command.name == name
    assert command.hidden == entry.hidden
    if entry.summary is not None:
        assert command.get_short_help_str(10_000) == entry.summary


def test_help_lists_every_visible_command_with_its_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = result.stdout.split("Commands:\n", 1)[1]
    for name, entry in COMMANDS.items():
        if entry.hidden:
            assert f"  {name} " not in listed
        else:
            assert f"  {name} " in listed and str(entry.summary)[:30] in listed, name


@pytest.mark.parametrize(
    ("group", "sub"), [("pipeline", "export"), ("runs", "export"), ("spec", "convert")]
)
def test_subcommands_from_other_modules_are_listed_and_run(group: str, sub: str) -> None:
    listed = CliRunner().invoke(cli, [group, "--help"])
    assert listed.exit_code == 0, listed.output
    assert f"  {sub} " in listed.stdout
    own = CliRunner().invoke(cli, [group, sub, "--help"])
    assert own.exit_code == 0, own.output
    assert f"Usage: cli {group} {sub} " in own.stdout


def test_a_table_entry_that_is_no_command_is_refused() -> None:
    from containerexec.cli.lazy import Lazy

    with pytest.raises(TypeError, match="is not a click command"):
        load(Lazy("containerexec.cli.options:inputs_option"))


def test_an_unknown_command_is_clicks_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert isinstance(cli, click.Group)
