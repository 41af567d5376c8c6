"""Arrays: shards are expanded in a sorted, stable order; --shard selects among them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from containerexec.errors import UsageError
from containerexec.model import arrays
from containerexec.model.arrays import Shard
from containerexec.model.spec import ArraySpec, GlobSpec, LinesSpec


def values(shards: list[Shard]) -> list[str]:
    return [s.value for s in shards]


def test_no_array_is_exactly_one_shard() -> None:
    assert arrays.expand(None, {}) == [Shard(0, "", 1)]


def test_values_keep_their_order_and_render_booleans_lowercase() -> None:
    shards = arrays.expand(ArraySpec(values=["b", 2, 1.5, True]), {})
    assert values(shards) == ["b", "2", "1.5", "true"]
    assert [s.index for s in shards] == [0, 1, 2, 3]
    assert {s.count for s in shards} == {4}


def test_range_counts_from_zero() -> None:
    assert values(arrays.expand(ArraySpec(range=3), {})) == ["0", "1", "2"]


def test_glob_indices_are_sorted_and_independent_of_creation_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root, names in (
        (a, ["z.txt", "m.txt", "sub/a.txt", "x.dat"]),
        (b, ["sub/a.txt", "x.dat", "m.txt", "z.txt"]),
    ):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
    spec = ArraySpec(glob=GlobSpec(input="corpus", pattern="**/*.txt"))
    first = arrays.expand(spec, {"corpus": str(a)})
    second = arrays.expand(spec, {"corpus": str(b)})
    assert values(first) == ["m.txt", "sub/a.txt", "z.txt"]
    assert first == second


def test_glob_skips_directories(tmp_path: Path) -> None:
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "f.txt").write_text("x")
    spec = ArraySpec(glob=GlobSpec(input="c", pattern="*.txt"))
    assert values(arrays.expand(spec, {"c": str(tmp_path)})) == ["f.txt"]


def test_lines_skip_blank_lines_and_keep_inner_spaces(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("first line\n\n  \nsecond ; line\r\nthird")
    spec = ArraySpec(lines=LinesSpec(input="list"))
    assert values(arrays.expand(spec, {"list": str(path)})) == [
        "first line",
        "second ; line",
        "third",
    ]


@pytest.mark.parametrize(
    ("selection", "indices"),
    [
        (None, [0, 1, 2, 3, 4, 5]),
        ("3", [3]),
        ("1,3", [1, 3]),
        ("2-4", [2, 3, 4]),
        ("0, 5", [0, 5]),
        ("4,1-2", [1, 2, 4]),
    ],
)
def test_select_keeps_the_named_shards_in_index_order(
    selection: str | None, indices: list[int]
) -> None:
    shards = arrays.expand(ArraySpec(range=6), {})
    assert [s.index for s in arrays.select(shards, selection)] == indices


def test_select_names_a_shard_that_does_not_exist() -> None:
    shards = arrays.expand(ArraySpec(range=3), {})
    with pytest.raises(UsageError, match="no shard 7; this run has 3 shard"):
        arrays.select(shards, "1,7")


def test_select_explains_the_accepted_forms() -> None:
    with pytest.raises(UsageError, match="expected an index, a list '0,4,7' or a range '2-5'"):
        arrays.select(arrays.expand(ArraySpec(range=3), {}), "x")


def test_ten_thousand_shards_expand_in_order_and_share_nothing() -> None:
    # No timing asserted (machines vary); tests/slow/test_memory.py measures the memory.
    shards = arrays.expand(ArraySpec(range=10_000), {})
    assert len(shards) == 10_000
    assert shards[-1] == Shard(9_999, "9999", 10_000)
    assert [(s.index, s.value, s.count) for s in shards] == [
        (i, str(i), 10_000) for i in range(10_000)
    ]
    # Share nothing: one frozen object per shard, so no shard can change another.
    assert len({id(s) for s in shards}) == 10_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        shards[0].value = "changed"  # type: ignore[misc]
