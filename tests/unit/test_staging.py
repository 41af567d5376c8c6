"""The check and commit of staged outputs, on plain folders (the engine tests make them in
containers: tests/engine/test_outputs.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec
from containerexec.run import staging
from containerexec.store import files

SPEC = ModuleSpec.model_validate(
    {
        "name": "m",
        "environment": {"image": "x"},
        "command": ["true"],
        "outputs": {"out": {"type": "directory"}},
    }
)


def staged(root: Path, shard: int, entries: dict[str, str]) -> Path:
    folder = root / f"staging{shard}"
    staging.prepare(folder, SPEC)
    for rel, text in entries.items():
        (folder / "out" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "out" / rel).write_text(text)
    return folder


def commit(root: Path, folder: Path, shard: int) -> list[str]:
    bindings = Bindings({}, {"out": str(root / "target")})
    found = staging.check(folder, SPEC, bindings)
    index = staging.CommitIndex(root / staging.INDEX_NAME)
    return staging.commit(folder, SPEC, bindings, found, shard=shard, index=index)


def test_links_that_resolve_out_through_another_link_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "d" / "self").symlink_to("..")  # a link to the output itself: inside
    (out / "x").symlink_to("d/self/..")  # lexically inside, really the output's parent
    with pytest.raises(files.UnsafeEntry, match="'x' is a link out of the output"):
        files.normalise(out)


def test_normalise_keeps_inner_links_and_clears_special_bits(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "f").write_text("x")
    os.chmod(out / "sub" / "f", 0o6755)
    os.chmod(out / "sub", 0o1777)
    (out / "link").symlink_to("sub/f")
    entries = files.normalise(out)
    assert [(e.rel, e.kind, e.target) for e in entries] == [
        ("link", "link", "sub/f"),
        ("sub", "dir", ""),
        ("sub/f", "file", ""),
    ]
    assert stat.S_IMODE(os.stat(out / "sub" / "f").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == 0o777


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(files.UnsafeEntry, match="is a FIFO"):
        files.normalise(tmp_path)


def test_shards_merge_and_a_collision_moves_nothing(tmp_path: Path) -> None:
    commit(tmp_path, staged(tmp_path, 0, {"kept/0": "a", "summary.txt": "0"}), 0)
    commit(tmp_path, staged(tmp_path, 1, {"kept/1": "b", "stats/1.json": "{}"}), 1)
    late = staged(tmp_path, 2, {"kept/2": "c", "summary.txt": "2"})
    with pytest.raises(
        staging.OutputCollision, match="summary.txt' was already written by shard 0"
    ):
        commit(tmp_path, late, 2)
    target = tmp_path / "target"
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "kept/0",
        "kept/1",
        "stats/1.json",
        "summary.txt",
    ]
    assert (target / "summary.txt").read_text() == "0"
    # The same shard committing again replaces its own files.
    commit(tmp_path, staged(tmp_path, 0, {"kept/0": "a2"}), 0)
    assert (target / "kept" / "0").read_text() == "a2"


def test_overwrite_clears_the_old_content_at_the_first_commit(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging.overwrite_later(tmp_path / staging.INDEX_NAME, [str(target)])
    assert (target / "old.txt").exists()  # not before the first commit
    commit(tmp_path, staged(tmp_path, 0, {"new.txt": "new"}), 0)
    commit(tmp_path, staged(tmp_path, 1, {"new1.txt": "new"}), 1)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt", "new1.txt"]
