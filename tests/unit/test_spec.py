"""Module specs: valid ones load; every problem of a bad one is listed as FILE:LINE:COL."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from containerexec.errors import SpecError
from containerexec.model.spec import load_spec, parse_bytes, parse_seconds, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOOD = """\
name: echo
environment: {image: containerexec/base:bookworm}
inputs:
  text: {type: string}
outputs:
  out: {type: file, path: out.txt}
command: [python3, -c, "print(1)", "${{inputs.text}}", "${{outputs.out}}"]
"""


def problems(text: str, path: str = "spec.yaml") -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text), path)
    return [str(p) for p in info.value.problems]


def test_example_specs_are_valid() -> None:
    paths = sorted((ROOT / "specs").glob("*.yaml"))
    assert ROOT / "specs" / "wordcount.yaml" in paths  # not vacuous if specs/ moves
    for path in paths:
        assert load_spec(path).name


def test_good_spec_loads_with_defaults() -> None:
    spec = parse_spec(GOOD, "good.yaml")
    assert spec.name == "echo"
    assert spec.version == "0.0.0"
    assert spec.network is False
    assert spec.retries.max_attempts == 1
    assert spec.inputs["text"].type == "string"


def test_yaml_syntax_error_is_located() -> None:
    found = problems("name: x\ncommand: [a, b\n", "syn.yaml")
    assert len(found) == 1
    assert re.match(r"syn\.yaml:\d+:\d+: YAML syntax error: ", found[0])


def test_unknown_key_says_did_you_mean() -> None:
    found = problems(GOOD.replace("command:", "comand:"))
    assert any(
        p.startswith("spec.yaml:7:1: comand: unknown key 'comand'; did you mean 'command'?")
        for p in found
    )


def test_unknown_key_with_no_near_match_lists_valid_keys() -> None:
    found = problems(GOOD + "zzzzzz: 1\n")
    assert any("unknown key 'zzzzzz'; valid keys: " in p and "command" in p for p in found)


def test_unknown_key_in_a_nested_section_is_located() -> None:
    found = problems(GOOD + "resources: {memroy: 1g}\n")
    assert found == [
        "spec.yaml:8:13: resources.memroy: unknown key 'memroy'; did you mean 'memory'?"
    ]


def test_wrong_type_names_field_expected_and_found() -> None:
    found = problems(GOOD.replace("{type: string}", "{type: strng}"))
    assert len(found) == 1
    assert found[0].startswith("spec.yaml:4:16: inputs.text.type: expected 'file'")
    assert found[0].endswith("got 'strng'")


def test_command_that_is_not_a_list_is_refused() -> None:
    found = problems("name: x\nenvironment: {image: a}\ncommand: 5\n")
    assert found == ["spec.yaml:3:10: command: expected a valid list, got '5'"]


def test_duplicate_key_names_the_first_one() -> None:
    found = problems(GOOD + "name: again\n")
    assert found == ["spec.yaml:8:1: name: duplicate key 'name' (first at line 1)"]


def test_placeholder_naming_no_input_lists_the_declared_ones() -> None:
    found = problems(GOOD.replace("${{inputs.text}}", "${{inputs.txet}}"))
    assert found == [
        "spec.yaml:7:36: command[3]: '${{inputs.txet}}' names no declared input (text)"
    ]


def test_shard_placeholder_without_array_is_refused() -> None:
    found = problems(GOOD.replace("${{inputs.text}}", "${{shard.index}}"))
    assert any("'${{shard.index}}' needs an 'array:' section" in p for p in found)


def test_a_placeholder_split_across_two_command_elements_is_refused_where_it_starts() -> None:
    found = problems(GOOD.replace('"${{inputs.text}}"', '"${{inputs", ".text}}"'))
    assert found == [
        "spec.yaml:7:36: command[3]: unterminated placeholder in '${{inputs'; "
        "write ${{inputs.NAME}}"
    ]


def test_placeholders_in_env_and_optional_groups_are_checked_with_their_position() -> None:
    text = GOOD.replace(
        '"${{outputs.out}}"]', '["--x", "${{jobs.a.outputs.o}}"]]\nenv: {A: "$${{inputs.nope}}"}'
    )
    assert problems(text) == [
        "spec.yaml:7:64: command[4][1]: unknown placeholder '${{jobs.a.outputs.o}}'; "
        "expected inputs.NAME, outputs.NAME or shard.index|value|count",
        "spec.yaml:8:10: env.A: '${{inputs.nope}}' names no declared input (text)",
    ]


def test_hostile_literals_around_placeholders_are_accepted() -> None:
    command = (
        r"""command: [echo, "a;b", "it's", "x\ny", "$${{inputs.text}}", "${{ outputs.out }}"]"""
    )
    spec = parse_spec(GOOD.replace(GOOD.splitlines()[6], command), "s.yaml")
    assert spec.command == [
        "echo",
        "a;b",
        "it's",
        "x\ny",
        "$${{inputs.text}}",
        "${{ outputs.out }}",
    ]


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b"])
def test_output_path_outside_its_folder_is_refused(path: str) -> None:
    found = problems(GOOD.replace("path: out.txt", f"path: {path}"))
    assert len(found) == 1
    assert re.match(
        r"spec\.yaml:6:\d+: outputs\.out\.path: must be a relative path inside", found[0]
    )


def test_command_writing_outside_an_output_folder_is_refused() -> None:
    found = problems(GOOD.replace('"${{outputs.out}}"', '"${{outputs.out}}/../x"'))
    assert any(
        "command[4]: output path '${{outputs.out}}/../x' leaves its output folder" in p
        for p in found
    )


def test_every_problem_is_listed_at_once_in_file_order() -> None:
    text = """\
    name: bad
    environment: {image: containerexec/base:bookworm}
    inputs:
      x: {type: strng}
    outputs:
      out: {type: file, path: /abs}
    comand: [echo]
    command: [echo, "${{inputs.nope}}"]
    resources: {memory: lots}
    array: {range: 3, max_parallel: 0}
    name: again
    """
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text), "bad.yaml")
    lines = [(p.line, p.col) for p in info.value.problems]
    assert len(lines) == 7
    assert lines == sorted(lines)
    assert {p.loc for p in info.value.problems} == {
        "inputs.x.type",
        "outputs.out.path",
        "comand",
        "command[1]",
        "resources.memory",
        "array.max_parallel",
        "name",
    }
    assert str(info.value).startswith("bad.yaml: 7 problems; nothing was run.\n")
    assert info.value.exit_code == 2


def test_environment_needs_exactly_one_of_image_or_build() -> None:
    found = problems(GOOD.replace("{image: containerexec/base:bookworm}", "{image: a, build: b}"))
    assert found == ["spec.yaml:2:14: environment: expected exactly one of 'image' or 'build'"]


def test_array_needs_exactly_one_source() -> None:
    found = problems(GOOD + "array: {range: 2, values: [a]}\n")
    assert any(
        "array: expected exactly one of 'values', 'range', 'glob', 'lines' or 'python', "
        "found values, range" in p
        for p in found
    )


def test_default_must_match_the_input_type() -> None:
    found = problems(GOOD.replace("{type: string}", "{type: integer, default: abc}"))
    assert found == ["spec.yaml:4:9: inputs.text: expected an integer, got 'abc'"]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert "No such file or directory" in str(info.value)


def test_empty_file_is_a_spec_error() -> None:
    assert problems("", "empty.yaml") == [
        "empty.yaml:1:1: expected a module spec (a mapping), found nothing"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 1024**2),
        ("1.5g", int(1.5 * 1024**3)),
        ("2GiB", 2 * 1024**3),
        (1000, 1000),
    ],
)
def test_sizes_parse_with_units(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", 45.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        (2, 2.0),
        (0.5, 0.5),
    ],
)
def test_durations_parse_with_units(text: str | float, expected: float) -> None:
    assert parse_seconds(text) == expected


@pytest.mark.parametrize("bad", ["10x", "soon", True, "10m junk"])
def test_bad_durations_say_what_was_expected(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_seconds(bad)


def test_an_unquoted_boolean_in_command_is_one_problem_not_one_per_union_member() -> None:
    found = problems(
        """\
        name: t
        environment: {image: x}
        command: [true]
        """
    )
    assert found == [
        "spec.yaml:3:11: command[0]: expected a valid string or a valid list, got 'True'"
    ]


def test_an_input_named_like_a_type_keeps_its_place_in_the_error() -> None:
    found = problems(
        """\
        name: t
        environment: {image: x}
        inputs:
          str: {type: strng}
        command: [run, "${{inputs.str}}"]
        """
    )
    assert len(found) == 1 and found[0].startswith("spec.yaml:4:15: inputs.str.type: expected")
