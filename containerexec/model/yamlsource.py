"""YAML text -> plain data plus the line and column of every key and value.

Pydantic reports errors by `loc` (a path of keys and indices); this module keeps
a map from those paths to positions in the file, so every problem can be shown
as FILE:LINE:COL. Duplicate keys, which PyYAML silently accepts, are problems.

PyYAML composes `*name` aliases as shared nodes, so a small file can stand for
billions of values ("billion laughs"). Walking that graph into plain data is
where the expansion happens; it stops at MAX_NODES values, with a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from containerexec.errors import Problem

Loc = tuple[str | int, ...]

# Far above any real spec (10,000 array values written out are ~10,000 nodes), far
# below what a bomb expands to. Walking this many nodes costs less than scanning an
# honest file that holds them, so a bomb is refused faster than such a file is read.
MAX_NODES = 100_000


class _TooLarge(Exception):
    """Raised out of the walk at the node that went past MAX_NODES."""

    def __init__(self, node: yaml.Node, loc: Loc) -> None:
        self.node = node
        self.loc = loc


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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
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
        located.data = _Builder(loader).build(node, (), located)
    except _TooLarge as exc:
        located.data = None
        located.values.clear()
        located.keys.clear()
        mark = exc.node.start_mark
        located.problems.append(
            Problem(
                path,
                mark.line + 1,
                mark.column + 1,
                dotted(exc.loc),
                f"more than {MAX_NODES:,} values once aliases (*name) are expanded "
                "(an alias bomb?); write the values out or nest fewer aliases",
            )
        )
    return located


@dataclass
class _Builder:
    """Node graph -> plain data, counting every node it expands (aliases included)."""

    loader: yaml.SafeLoader
    count: int = 0

    def build(self, node: yaml.Node, loc: Loc, located: Located) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(node, loc)
        located.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, located)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i), located) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc, located: Located) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.loader.construct_object(key_node, deep=True)
            else:  # counted like any value, its positions kept apart
                key = self.build(key_node, loc, Located(located.path, None))
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
            out[key] = self.build(value_node, sub, located)
        return out
