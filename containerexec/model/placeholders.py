"""${{inputs.x}}, ${{outputs.y}} and ${{shard.index|value|count}} in argv; pure, never a shell.

A placeholder is replaced inside one argv element, so a value always stays
exactly one argument whatever it contains (spaces, quotes, ';', newlines).
A nested list in `command` is an optional group: it is dropped whole when an
input it refers to has no value.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from containerexec.errors import Problem

PATTERN = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_REF = re.compile(r"^(inputs|outputs|shard|jobs)\.([A-Za-z_][A-Za-z0-9_.]*)$")
SHARD_FIELDS = ("index", "value", "count")


def references(text: str) -> list[str]:
    """The placeholder names in `text`, e.g. ['inputs.corpus', 'shard.index']."""
    return [m.group(1) for m in PATTERN.finditer(text)]


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder in `text` by its value; KeyError names a missing one."""
    return PATTERN.sub(lambda m: values[m.group(1)], text)


def render_argv(command: Sequence[str | Sequence[str]], values: Mapping[str, str]) -> list[str]:
    """Render a spec command; optional groups whose inputs are unset are dropped."""
    argv: list[str] = []
    for item in command:
        if isinstance(item, str):
            argv.append(render(item, values))
        elif all(ref in values for part in item for ref in references(part)):
            argv.extend(render(part, values) for part in item)
    return argv


def is_inside(path: str) -> bool:
    """True when `path` is relative and does not climb out of its folder."""
    if not path or path.startswith("/"):
        return False
    norm = posixpath.normpath(path)
    return norm != ".." and not norm.startswith("../")


def check_spec(src: Any) -> list[Problem]:
    """Check every placeholder of a raw spec (a yamlsource.Located) against its declarations.

    Works on raw data, so these problems are reported together with schema errors.
    """
    data = src.data if isinstance(src.data, dict) else {}
    declared = {
        "inputs": set(data.get("inputs") or {}) if isinstance(data.get("inputs"), dict) else set(),
        "outputs": set(data.get("outputs") or {})
        if isinstance(data.get("outputs"), dict)
        else set(),
    }
    has_array = data.get("array") is not None
    problems: list[Problem] = []
    places: list[tuple[tuple[str | int, ...], Any]] = []
    command = data.get("command")
    if isinstance(command, list):
        for i, item in enumerate(command):
            if isinstance(item, list):
                places += [(("command", i, j), part) for j, part in enumerate(item)]
            else:
                places.append((("command", i), item))
    env = data.get("env")
    if isinstance(env, dict):
        places += [(("env", k), v) for k, v in env.items()]
    for loc, text in places:
        if not isinstance(text, str):
            continue
        for message in check_text(text, declared, has_array):
            problems.append(src.problem(loc, message))
    return problems


def check_text(text: str, declared: Mapping[str, set[str]], has_array: bool) -> list[str]:
    """Problems with the placeholders in one string."""
    out = []
    if text.count("${{") != len(PATTERN.findall(text)):
        out.append(f"unterminated placeholder in '{text}'; write ${{{{inputs.NAME}}}}")
    for ref in references(text):
        m = _REF.match(ref)
        if not m or m.group(1) == "jobs":
            out.append(
                f"unknown placeholder '${{{{{ref}}}}}'; expected inputs.NAME, outputs.NAME "
                "or shard.index|value|count"
            )
            continue
        kind, name = m.groups()
        if kind == "shard":
            if name not in SHARD_FIELDS:
                out.append(f"unknown placeholder '${{{{{ref}}}}}'; shard has index, value, count")
            elif not has_array:
                out.append(f"'${{{{{ref}}}}}' needs an 'array:' section")
        elif name not in declared[kind]:
            known = ", ".join(sorted(declared[kind])) or "none declared"
            out.append(f"'${{{{{ref}}}}}' names no declared {kind[:-1]} ({known})")
    for m in re.finditer(r"\$\{\{\s*outputs\.[A-Za-z0-9_]+\s*\}\}([^$]*)", text):
        rest = m.group(1).lstrip("/")
        if rest and not is_inside(rest):
            out.append(f"output path '{text}' leaves its output folder")
    return out
