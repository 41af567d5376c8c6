"""Issue 20, item 8c in a real container: an Azure ML value inside `"$(...)"`, backticks
and `$((...))` arrives as its exact bytes, and nothing in it runs."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import BASE_IMAGE

from tests.engine.test_azureml import cx

HOSTILE = (
    "; touch /outputs/o/x # $(touch /outputs/o/y) `touch /outputs/o/z` * "
    "\"q\" 'q' \\ \nline2\ttab  two  spaces"
)
COMMAND = (
    "printf '%s' \"$(printf %s ${{inputs.a}})\" > ${{outputs.o}}/dollar && "
    "printf '%s' \"`printf %s ${{inputs.a}}`\" > ${{outputs.o}}/backticks && "
    "echo $(( ${{inputs.n}} + 1 )) > ${{outputs.o}}/sum"
)
COMPONENT = {
    "$schema": "https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json",
    "type": "command",
    "name": "substituted",
    "inputs": {"a": {"type": "string"}, "n": {"type": "string"}},
    "outputs": {"o": {"type": "uri_folder"}},
    "environment": {"image": BASE_IMAGE},
    "command": COMMAND,
}


def _run(tmp_path: Path, a: str, n: str) -> tuple[int, str, Path]:
    comp = tmp_path / "substituted.yml"
    comp.write_text(yaml.safe_dump(COMPONENT))
    out = tmp_path / "out"
    result = cx(
        tmp_path / "runs", "run", str(comp), "-i", f"a={a}", "-i", f"n={n}", "-o", f"o={out}"
    )
    return result.exit_code, result.output, out


def test_a_value_inside_command_substitution_arrives_exactly_and_runs_nothing(
    tmp_path: Path,
) -> None:
    code, output, out = _run(tmp_path, HOSTILE, "41")
    assert code == 0, output
    assert (out / "dollar").read_bytes() == HOSTILE.encode()
    assert (out / "backticks").read_bytes() == HOSTILE.encode()
    assert (out / "sum").read_text() == "42\n"
    assert sorted(p.name for p in out.iterdir()) == ["backticks", "dollar", "sum"]  # no x, y, z


def test_a_value_used_in_arithmetic_that_is_not_an_integer_stops_the_command(
    tmp_path: Path,
) -> None:
    code, output, _ = _run(tmp_path, "a", "a[$(touch /outputs/o/w)]")
    assert code != 0
    assert "input 'n' is used in $((...)) and must be an integer" in output, output
    assert list(tmp_path.rglob("w")) == []
