"""The one ${{...}} grammar, for modules and pipelines: find, parse, check and render.

    inputs.NAME  outputs.NAME  shard.index|value|count   (in a module's command and env)
    inputs.NAME  jobs.JOB.outputs.NAME                   (in a pipeline's job inputs and outputs)

Rendering is one pass over the text, and a placeholder is replaced inside one
argv element, so a value always stays exactly one argument whatever it contains
(spaces, quotes, ';', newlines, even '${{'): a substituted value is never read
again as a placeholder. A nested list in `command` is an optional group: it is
dropped whole when an input it refers to has no value.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

# Non-greedy, so '${{a}}-${{b}}' is two placeholders; '.' stops at a newline.
_PATTERN = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A job of a pipeline component is 'parent/child' (model/names.py JOB_RE).
_REF = re.compile(
    rf"(inputs|outputs|shard)\.({_NAME})|jobs\.({_NAME}(?:/{_NAME})*)\.outputs\.({_NAME})"
)
SHARD_FIELDS = ("index", "value", "count")

Kind = Literal["inputs", "outputs", "shard", "jobs"]
Where = Literal["module", "pipeline"]
ALLOWED: dict[Where, tuple[Kind, ...]] = {
    "module": ("inputs", "outputs", "shard"),
    "pipeline": ("inputs", "jobs"),
}
_EXPECTED: dict[Where, str] = {
    "module": "inputs.NAME, outputs.NAME or shard.index|value|count",
    "pipeline": "inputs.NAME or jobs.JOB.outputs.NAME",
}


@dataclass(frozen=True)
class Ref:
    """A parsed reference: inputs.X, outputs.X, shard.FIELD or jobs.JOB.outputs.X."""

    kind: Kind
    name: str  # the input, the output, the shard field, or the job
    output: str = ""  # the job's output, for kind 'jobs'

    def __str__(self) -> str:
        if self.kind == "jobs":
            return f"jobs.{self.name}.outputs.{self.output}"
        return f"{self.kind}.{self.name}"

    def placeholder(self) -> str:
        """The reference as written in a spec: '${{inputs.x}}'."""
        return "${{" + str(self) + "}}"


@dataclass(frozen=True)
class Placeholder:
    """One ${{...}} found in a text: what is written between the braces, and where."""

    written: str  # stripped of the spaces inside the braces
    ref: Ref | None  # None when it is not in the grammar
    start: int
    end: int


def parse_ref(text: str) -> Ref | None:
    """'jobs.a.outputs.o' -> Ref('jobs', 'a', 'o'); None when `text` is not a reference."""
    m = _REF.fullmatch(text)
    if m is None:
        return None
    if m.group(1):
        return Ref(cast(Kind, m.group(1)), m.group(2))
    return Ref("jobs", m.group(3), m.group(4))


def find(text: str) -> list[Placeholder]:
    """Every placeholder in `text`, in order."""
    return [
        Placeholder(m.group(1), parse_ref(m.group(1)), m.start(), m.end())
        for m in _PATTERN.finditer(text)
    ]


def references(text: str) -> list[str]:
    """The placeholder names in `text`, e.g. ['inputs.corpus', 'shard.index']."""
    return [p.written for p in find(text)]


def whole(text: str) -> Ref | None:
    """The reference when `text` is one placeholder and nothing else (spaces aside)."""
    stripped = text.strip()
    found = find(stripped)
    if len(found) == 1 and found[0].start == 0 and found[0].end == len(stripped):
        return found[0].ref
    return None


def unterminated(text: str) -> str | None:
    """A problem when some '${{' in `text` opens no complete placeholder."""
    if text.count("${{") != len(find(text)):
        return f"unterminated placeholder in '{text}'; write ${{{{inputs.NAME}}}}"
    return None


def unknown(placeholder: Placeholder, where: Where) -> str | None:
    """A problem when `placeholder` is not in the grammar or not allowed in a `where` text."""
    ref = placeholder.ref
    shown = "${{" + placeholder.written + "}}"
    if ref is None or ref.kind not in ALLOWED[where]:
        return f"unknown placeholder '{shown}'; expected {_EXPECTED[where]}"
    if ref.kind == "shard" and ref.name not in SHARD_FIELDS:
        return f"unknown placeholder '{shown}'; shard has index, value, count"
    return None


def allowed_refs(text: str, where: Where) -> list[Ref]:
    """The references in a `where` text; ValueError names the first one that is wrong."""
    problem = unterminated(text)
    if problem:
        raise ValueError(problem)
    refs = []
    for placeholder in find(text):
        problem = unknown(placeholder, where)
        if problem:
            raise ValueError(problem)
        assert placeholder.ref is not None
        refs.append(placeholder.ref)
    return refs


def as_text(value: Any) -> str:
    """A bound value as placeholder text: booleans as YAML writes them, the rest by str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder in `text` by its value; KeyError names a missing one.

    One pass: a value is inserted as it is, never searched for placeholders or
    for regex escapes such as '\\1'.
    """
    return _PATTERN.sub(lambda m: values[m.group(1)], text)


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


def check_text(text: str, declared: Mapping[str, set[str]], has_array: bool) -> list[str]:
    """Problems with the placeholders in one string of a module spec.

    Args:
        declared: the names declared under 'inputs' and under 'outputs'.
        has_array: whether the module has an 'array:' section (shard.* needs one).
    """
    out = [p for p in [unterminated(text)] if p]
    found = find(text)
    for placeholder in found:
        problem = unknown(placeholder, "module")
        if problem:
            out.append(problem)
            continue
        ref = placeholder.ref
        assert ref is not None
        if ref.kind == "shard":
            if not has_array:
                out.append(f"'{ref.placeholder()}' needs an 'array:' section")
        elif ref.name not in declared[ref.kind]:
            known = ", ".join(sorted(declared[ref.kind])) or "none declared"
            out.append(f"'{ref.placeholder()}' names no declared {ref.kind[:-1]} ({known})")
    for placeholder in found:
        if placeholder.ref is not None and placeholder.ref.kind == "outputs":
            # What follows an output folder, up to the next placeholder, is a path in it.
            rest = text[placeholder.end :].split("$", 1)[0].lstrip("/")
            if rest and not is_inside(rest):
                out.append(f"output path '{text}' leaves its output folder")
    return out
