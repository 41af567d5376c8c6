"""Issue 20, item 8c: an Azure ML value substituted inside `"$(...)"`, backticks,
`${...}` or `$((...))` stays one literal word: never split, globbed or run.

The rendered commands run under the host's dash and bash (what `sh` is on Debian and
on other images), in a folder that would show any file a value managed to create.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from containerexec.formats import amlcommand
from containerexec.model import placeholders

HOSTILE = [
    "; touch x #",
    "$(touch y)",
    "`touch z`",
    "*",
    "a \"q\" 'q' \\",
    "two\nlines",
    "  spaced  ",
    "a)b}c",
    "",
]
PRINT_ARGS = "python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))'"
SHELLS = [sh for sh in ("dash", "bash") if shutil.which(sh)]
# Each a place the old translation left the value unquoted inside a new shell word.
CONSTRUCTS = [
    '"$(printf %s ${{inputs.a}})"',
    '"`printf %s ${{inputs.a}}`"',
    '"x`printf %s ${{inputs.a}}`"',
    '"$(printf %s "$(printf %s ${{inputs.a}})")"',
    '"$( (printf %s ${{inputs.a}}) )"',
    '"${UNSET_HERE:-${{inputs.a}}}"',
    "${UNSET_HERE:-${{inputs.a}}}",
    "\"$(printf '%s' ${{inputs.a}})\"",
]


def _run(
    command: str, values: dict[str, str], cwd: Path, sh: str
) -> subprocess.CompletedProcess[str]:
    names = sorted({k.split(".", 1)[1] for k in values} | {"a"})
    cmd = amlcommand.translate(command, names, [], [])
    assert cmd.problems == []
    argv = placeholders.render_argv(cmd.argv("t", []), values)
    return subprocess.run([sh, *argv[1:]], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("sh", SHELLS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_value_inside_command_substitution_stays_one_literal_word(
    tmp_path: Path, value: str, sh: str
) -> None:
    out = _run(PRINT_ARGS + " " + " ".join(CONSTRUCTS), {"inputs.a": value}, tmp_path, sh)
    assert out.returncode == 0, out.stderr
    expected = value.rstrip("\n")  # $(...) drops trailing newlines, as any shell does
    printed = json.loads(out.stdout)
    assert printed == [expected] * 2 + [f"x{expected}"] + [expected] * 3 + [value] * 2, printed
    assert list(tmp_path.iterdir()) == []  # no x, y or z: nothing ran


def test_the_rendered_script_quotes_each_reference_for_its_context() -> None:
    cmd = amlcommand.translate(
        'echo "$(printf %s ${{inputs.a}})" `cat ${{inputs.a}}`', ["a"], [], []
    )
    body = cmd.script.rsplit("\n", 1)[-1]
    assert body == 'echo "$(printf %s "${in_a}")" `cat "${in_a}"`'


@pytest.mark.parametrize("sh", SHELLS)
def test_a_value_used_in_arithmetic_must_be_an_integer(tmp_path: Path, sh: str) -> None:
    command = 'echo $(( ${{inputs.a}} + 1 )) "$((${{inputs.a}} * 2))"'
    assert _run(command, {"inputs.a": "-4"}, tmp_path, sh).stdout == "-3 -8\n"
    for value in ["a[$(touch y)]", "1; touch x", "x", "", "`touch z`"]:
        out = _run(command, {"inputs.a": value}, tmp_path, sh)
        assert out.returncode == 2 and out.stdout == "", (value, out)
        assert "input 'a' is used in $((...)) and must be an integer" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('echo "$(printf %s ${{inputs.a}}', "the command leaves a '$(' open"),
        ("echo `printf %s", "the command leaves a '`' open"),
        ('echo "$(printf "%s ${{inputs.a}})"', "leaves a"),
    ],
)
def test_an_unclosed_construct_is_a_problem(command: str, expected: str) -> None:
    problems = amlcommand.translate(command, ["a"], [], []).problems
    assert any(expected in p for p in problems), problems


# Issue 25, item 3: a segment holds any command text, as Azure ML allows.
SEGMENTS = (
    "printf 'base\\n' > base.txt $[[&& printf '%s' ${{inputs.x}} > x.txt]] "
    "$[[&& printf '%s' \"$(printf %s ${{inputs.x}})\" > sub.txt]] "
    "$[[&& echo --shout ${{inputs.shout}} > shout.txt]]; "
    "$[[printf '%s|' ${{inputs.x}} ${{inputs.shout}} | tr -d '|' > both.txt]]"
)


@pytest.mark.parametrize("sh", SHELLS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_segment_with_shell_syntax_is_dropped_when_unset_and_kept_with_literal_values(
    tmp_path: Path, value: str, sh: str
) -> None:
    cmd = amlcommand.translate(SEGMENTS, ["x", "shout"], [], ["x", "shout"])
    assert cmd.problems == []
    argv = cmd.argv("t", ["x", "shout"])

    def run(values: dict[str, str]) -> dict[str, str]:
        for f in tmp_path.iterdir():
            f.unlink()
        rendered = placeholders.render_argv(argv, values)
        out = subprocess.run([sh, *rendered[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return {f.name: f.read_text() for f in tmp_path.iterdir()}

    assert run({}) == {"base.txt": "base\n"}
    assert run({"inputs.x": value}) == {
        "base.txt": "base\n",
        "x.txt": value,
        "sub.txt": value.rstrip("\n"),  # $(...) drops trailing newlines, as any shell does
    }
    both = run({"inputs.x": value, "inputs.shout": value})
    assert both["shout.txt"] == f"--shout {value}\n"
    assert both["both.txt"] == value.replace("|", "") * 2
    assert set(both) == {"base.txt", "x.txt", "sub.txt", "shout.txt", "both.txt"}  # nothing ran
