"""YAML text -> plain data plus the line and column of every key and value.

Pydantic reports errors by `loc` (a path of keys and indices); this module keeps
a map from those paths to positions in the file, so every problem can be shown
as FILE:LINE:COL. Duplicate keys, which PyYAML silently accepts, are problems.

PyYAML composes `*name` aliases as shared nodes, so a small file can stand for
billions of values ("billion laughs"). Walking that graph into plain data is
where the expansion happens; it stops at MAX_NODES values, with a problem.

Pydantic's errors are put back at those positions too (pydantic_problems), with
'did you mean' for unknown keys: module specs and pipeline specs share it.

PyYAML's composer recurses once per level of nesting, so `[[[[...` a few thousand
levels deep ends in RecursionError; composing, and walking, stop at MAX_DEPTH levels.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from containerexec.errors import Problem

Loc = tuple[str | int, ...]

# Far above any real spec (10,000 array values written out are ~10,000 nodes), far
# below what a bomb expands to. Walking this many nodes costs less than scanning an
# honest file that holds them, so a bomb is refused faster than such a file is read.
MAX_NODES = 100_000
# Real specs nest fewer than 10 levels; 100 keeps the composer's and the walk's recursion
# (about 3 frames a level) far from Python's limit of 1,000 frames.
MAX_DEPTH = 100


class _TooLarge(Exception):
    """Raised out of the walk at the node that went past MAX_NODES (or MAX_DEPTH)."""

    def __init__(self, mark: yaml.Mark, loc: Loc, message: str, *, cut: bool = False) -> None:
        self.mark = mark
        self.message = message
        # a path 100 levels deep says nothing a reader can use past its first steps
        self.where = dotted(loc[:6]) + "..." if cut and len(loc) > 6 else dotted(loc)


def _too_deep(mark: yaml.Mark, loc: Loc) -> _TooLarge:
    return _TooLarge(
        mark,
        loc,
        f"nested more than {MAX_DEPTH} levels deep (lists or mappings inside each other); "
        "flatten the data",
        cut=True,
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer stops at MAX_DEPTH levels instead of recursing on."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(self.peek_event().start_mark, ())  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


@dataclass
class Located:
    """Parsed YAML data with positions (1-based) for each path in it."""

    path: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Line and column of `loc`, or of its nearest located parent."""
        table = self.keys if key else self.values
        for n in range(len(loc), -1, -1):
            sub = tuple(loc[:n])
            if key and sub in self.keys:
                return self.keys[sub]
            if sub in table:
                return table[sub]
            if sub in self.values:
                return self.values[sub]
        return (1, 1)

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.position(loc, key=key)
        return Problem(self.path, line, col, dotted(loc), message)


def dotted(loc: Loc) -> str:
    """('array', 'glob', 'input') -> 'array.glob.input'; indices as [i]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse(text: str, path: str) -> Located:
    """Parse YAML text; syntax errors and duplicate keys become problems."""
    located = Located(path=path, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _TooLarge as exc:
        located.problems.append(_located(path, exc))
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or str(exc)
        located.problems.append(Problem(path, line, col, "", f"YAML syntax error: {what}"))
        return located
    except yaml.YAMLError as exc:
        located.problems.append(Problem(path, 0, 0, "", f"YAML error: {exc}"))
        return located
    finally:
        loader.dispose()
    if node is None:
        return located
    try:
        located.data = _Builder(loader).build(node, (), located, 1)
    except _TooLarge as exc:
        located.data = None
        located.values.clear()
        located.keys.clear()
        located.problems.append(_located(path, exc))
    return located


def _located(path: str, exc: _TooLarge) -> Problem:
    return Problem(path, exc.mark.line + 1, exc.mark.column + 1, exc.where, exc.message)


@dataclass
class _Builder:
    """Node graph -> plain data, counting every node it expands (aliases included)."""

    loader: yaml.SafeLoader
    count: int = 0

    def build(self, node: yaml.Node, loc: Loc, located: Located, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(
                node.start_mark,
                loc,
                f"more than {MAX_NODES:,} values once aliases (*name) are expanded "
                "(an alias bomb?); write the values out or nest fewer aliases",
            )
        if depth > MAX_DEPTH:  # aliases of deep nodes inside each other nest deeper still
            raise _too_deep(node.start_mark, loc)
        located.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, located, depth)
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*loc, i), located, depth + 1) for i, item in enumerate(node.value)
            ]
        return self.loader.construct_object(node, deep=True)

    def _mapping(
        self, node: yaml.MappingNode, loc: Loc, located: Located, depth: int
    ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.loader.construct_object(key_node, deep=True)
            else:  # counted like any value, its positions kept apart
                key = self.build(key_node, loc, Located(located.path, None), depth + 1)
            if not isinstance(key, str | int | float | bool):
                key = str(key)
            sub = (*loc, str(key))
            if key in out:
                located.problems.append(
                    Problem(
                        located.path,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        dotted(sub),
                        f"duplicate key '{key}' (first at line {located.keys[sub][0]})",
                    )
                )
                continue
            located.keys[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, sub, located, depth + 1)
        return out


def pydantic_problems(exc: ValidationError, src: Located, root: type[BaseModel]) -> list[Problem]:
    """Turn pydantic errors into located problems, with 'did you mean' for unknown keys."""
    out = []
    for err in exc.errors(include_url=False):
        loc = _data_loc(src.data, err["loc"])
        if err["type"] == "extra_forbidden":
            valid = sorted(_fields_at(root, loc[:-1]))
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
            out.append(src.problem(loc, f"unknown key '{loc[-1]}'; {hint}", key=True))
            continue
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be ", "expected ", 1)
        if err["type"] != "value_error" and "input" in err:
            msg += f", got {_show(err['input'])}"
        problem = src.problem(loc, msg, key=err["type"] == "missing")
        if out and (out[-1].line, out[-1].col, out[-1].loc) == (
            problem.line,
            problem.col,
            problem.loc,
        ):
            # The members of a union each complain about the same value: one line says it.
            first, _, found = out[-1].message.rpartition(", got ")
            this = (msg.rpartition(", got ")[0] or msg).removeprefix("expected ")
            merged = f"{first} or {this}, got {found}" if first else f"{out[-1].message}; {msg}"
            out[-1] = replace(out[-1], message=merged)
            continue
        out.append(problem)
    return out


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"'{value}'"


def _data_loc(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """`loc` without the union member names pydantic inserts ('str', 'list[str]', ...).

    A part is such a name only where it is not a key of the data at that point, so an
    input that happens to be called 'str' keeps its place.
    """
    out: list[str | int] = []
    for part in loc:
        is_key = isinstance(data, dict) and part in data
        is_index = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if (
            not (is_key or is_index)
            and isinstance(part, str)
            and ("[" in part or part in ("str", "int", "float", "bool"))
        ):
            continue
        out.append(part)
        data = data[part] if (is_key or is_index) else None
    return tuple(out)


def _fields_at(model: Any, loc: tuple[str | int, ...]) -> set[str]:
    """The valid keys of the model found by walking `loc` from `model`."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return set()
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return set(current.model_fields)
    return set()


def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1:
                tp = models[0]
            elif len(args) == 1:
                tp = args[0]
            else:
                return tp
        else:
            return tp
