"""ArraySpec + bound inputs -> [Shard]; pure, sorted, with stable indices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model import placeholders
from containerexec.model.spec import ArraySpec


@dataclass(frozen=True)
class Shard:
    """One element of an array: its stable index and the value it works on."""

    index: int
    value: str
    count: int


def expand(array: ArraySpec | None, inputs: dict[str, Any]) -> list[Shard]:
    """The shards of a run; a module with no array has exactly one shard (index 0)."""
    if array is None:
        return [Shard(0, "", 1)]
    values: list[str]
    if array.values is not None:
        values = [placeholders.as_text(v) for v in array.values]
    elif array.range is not None:
        values = [str(i) for i in range(array.range)]
    elif array.python is not None:  # the Executor lists them in the image first
        raise UsageError(f"array.python: {array.python}() is listed when a run starts")
    elif array.glob is not None:
        root = Path(_bound("glob", array.glob.input, inputs))
        # Sorted relative paths give every file the same index on every machine.
        values = sorted(
            p.relative_to(root).as_posix() for p in root.glob(array.glob.pattern) if p.is_file()
        )
    else:
        assert array.lines is not None
        path = Path(_bound("lines", array.lines.input, inputs))
        with path.open(encoding="utf-8") as f:
            values = [line.rstrip("\r\n") for line in f if line.strip()]
    if not values and not array.allow_empty:
        raise UsageError(f"{_nothing_in(array, inputs)}; {NOTHING_NEXT}")
    if array.group is not None:
        # A JSON list: a file name or a line may hold any character, a newline too.
        size = array.group
        values = [json.dumps(values[i : i + size]) for i in range(0, len(values), size)]
    return [Shard(i, v, len(values)) for i, v in enumerate(values)]


def _bound(kind: str, name: str, inputs: dict[str, Any]) -> Any:
    """The value of the input an array reads; an optional input left unset is a UsageError.

    The spec checks that the input is declared (model/spec.py); only its value can be missing.
    """
    if name not in inputs:
        raise UsageError(
            f"array.{kind}.input: input '{name}' is not set; the array reads it: "
            f"pass -i {name}=PATH"
        )
    return inputs[name]


# A run of no shard "succeeds" while doing nothing, which hides a typo in a pattern or
# a wrong folder: refuse it unless the spec says an empty array is expected.
NOTHING_NEXT = (
    "nothing was run; check the pattern and the input, or set 'array.allow_empty: true' "
    "to let a run with no shard succeed"
)


def _nothing_in(array: ArraySpec, inputs: dict[str, Any]) -> str:
    """Where the array found no element, in the user's terms."""
    if array.glob is not None:
        return (
            f"array.glob: pattern '{array.glob.pattern}' matches no file in "
            f"'{inputs[array.glob.input]}' (input '{array.glob.input}')"
        )
    if array.lines is not None:
        return (
            f"array.lines: input '{array.lines.input}' ('{inputs[array.lines.input]}') "
            "has no non-empty line"
        )
    if array.range is not None:
        return "array.range is 0"
    return "array.values is empty"


def select(shards: list[Shard], selection: str | None) -> list[Shard]:
    """Keep the shards named by '3', '0,4,7' or '2-5' (inclusive); None keeps all."""
    if not selection:
        return shards
    wanted: set[int] = set()
    for part in selection.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                wanted.update(range(lo, hi + 1))
            else:
                wanted.add(int(part))
        except ValueError:
            raise UsageError(
                f"--shard '{selection}': expected an index, a list '0,4,7' or a range '2-5'"
            ) from None
    unknown = sorted(i for i in wanted if not 0 <= i < len(shards))
    if unknown:
        raise UsageError(
            f"--shard '{selection}': no shard {unknown[0]}; this run has {len(shards)} "
            f"shard(s), numbered 0 to {len(shards) - 1}"
        )
    return [s for s in shards if s.index in wanted]
