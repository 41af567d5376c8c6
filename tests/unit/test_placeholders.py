"""Placeholders: a value is always exactly one argv element, whatever it contains."""

from __future__ import annotations

import pytest

from containerexec.model import placeholders

WEIRD = [
    "with space",
    'quote\'s "double"',
    "semi;colon && rm -rf /",
    "new\nline",
    "$(echo no) `echo no` ${HOME}",
    "--looks-like-a-flag",
    "",
    "ünïcode ✓",
]


@pytest.mark.parametrize("value", WEIRD)
def test_a_weird_value_stays_one_argv_element(value: str) -> None:
    argv = placeholders.render_argv(["prog", "${{inputs.x}}", "--"], {"inputs.x": value})
    assert argv == ["prog", value, "--"]


@pytest.mark.parametrize("value", WEIRD)
def test_a_weird_value_inside_a_longer_element_stays_in_it(value: str) -> None:
    argv = placeholders.render_argv(["prog", "--x=${{inputs.x}}!"], {"inputs.x": value})
    assert argv == ["prog", f"--x={value}!"]


def test_a_value_that_looks_like_a_placeholder_is_not_expanded_again() -> None:
    values = {"inputs.a": "${{inputs.b}}", "inputs.b": "secret"}
    assert placeholders.render("${{inputs.a}}", values) == "${{inputs.b}}"


def test_spaces_inside_the_braces_are_allowed() -> None:
    assert placeholders.render("${{ inputs.x }}", {"inputs.x": "v"}) == "v"


def test_an_optional_group_is_dropped_when_its_input_is_unset() -> None:
    command: list[str | list[str]] = ["prog", ["--fail-on", "${{inputs.word}}"], "end"]
    assert placeholders.render_argv(command, {}) == ["prog", "end"]
    assert placeholders.render_argv(command, {"inputs.word": "x y"}) == [
        "prog",
        "--fail-on",
        "x y",
        "end",
    ]


def test_references_lists_every_placeholder() -> None:
    assert placeholders.references("${{inputs.a}}/${{shard.value}}.tsv") == [
        "inputs.a",
        "shard.value",
    ]


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("out.txt", True),
        ("a/b/c", True),
        ("a/../b", True),
        ("./x", True),
        ("../x", False),
        ("a/../../x", False),
        ("/abs", False),
        ("", False),
        ("..", False),
    ],
)
def test_is_inside_refuses_absolute_and_climbing_paths(path: str, inside: bool) -> None:
    assert placeholders.is_inside(path) is inside


DECLARED = {"inputs": {"corpus"}, "outputs": {"counts"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{inputs.nope}}", "'${{inputs.nope}}' names no declared input (corpus)"),
        ("${{outputs.nope}}", "'${{outputs.nope}}' names no declared output (counts)"),
        ("${{shard.size}}", "unknown placeholder '${{shard.size}}'; shard has index, value, count"),
        ("${{jobs.a.outputs.b}}", "unknown placeholder '${{jobs.a.outputs.b}}'"),
        ("${{inputs.corpus", "unterminated placeholder"),
        ("${{outputs.counts}}/../x", "leaves its output folder"),
    ],
)
def test_check_text_names_each_bad_placeholder(text: str, message: str) -> None:
    found = placeholders.check_text(text, DECLARED, has_array=True)
    assert any(message in p for p in found), found


def test_check_text_accepts_good_placeholders() -> None:
    text = "${{inputs.corpus}}/${{shard.value}}:${{outputs.counts}}/${{shard.index}}.tsv"
    assert placeholders.check_text(text, DECLARED, has_array=True) == []
