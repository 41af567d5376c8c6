"""Copying outputs: the one place that copies a file or a folder, and copy-then-rename.

Outputs leave a container's staging folder by rename where they can; across
filesystems, into a pipeline's -o place and in and out of the cache they are
copied. Every such copy goes through `copy` here, and every copy that must appear
at once goes through `copy_then_rename`, so a reader sees the old entry or the
whole new one, never half. `normalise` is the one check of a staged output before
it is committed: no link out of it, no special file, no setuid bit; copies keep
links as links, so nothing outside the staging folder is ever read.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def temp_sibling(dest: Path, tag: str = "partial") -> Path:
    """A fresh name beside `dest`, on its filesystem, hidden by a leading dot."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.{tag}")


def copy(src: Path, dest: Path) -> None:
    """Copy a file or a whole folder to `dest` (which must not exist); links stay links."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copy2(src, dest, follow_symlinks=False)


def remove(path: Path) -> None:
    """Remove a file, a link or a folder; nothing when it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def copy_then_rename(src: Path, dest: Path) -> None:
    """Put a copy of `src` at `dest` in one rename; an old folder at `dest` is swapped out.

    A failed copy (a full disk, say) leaves nothing beside `dest` and `dest` as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dest)
    try:
        copy(src, tmp)
    except BaseException:
        remove(tmp)
        raise
    if dest.is_dir() and not dest.is_symlink():
        old = temp_sibling(dest, "old")
        os.rename(dest, old)  # a folder cannot be replaced in one rename: swap it out first
        os.rename(tmp, dest)
        remove(old)
    else:
        os.replace(tmp, dest)


# Cleared on every committed file and folder: a container must not hand the host a
# setuid program, nor a folder whose setgid or sticky bit changes who owns what.
SPECIAL_MODE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


class UnsafeEntry(Exception):
    """A staged entry that cannot be committed safely: a link out of its output, or a
    FIFO, socket or device node. `path` is relative to the output, `target` a link's."""

    def __init__(self, path: str, reason: str, target: str = "") -> None:
        self.path = path
        self.reason = reason
        self.target = target
        super().__init__(f"'{path}' {reason}")


@dataclass(frozen=True)
class Entry:
    """One committed entry of an output: its path relative to the output, and its kind."""

    rel: str
    kind: Literal["file", "link", "dir"]
    target: str = ""  # a link's target, as written


def normalise(root: Path) -> list[Entry]:
    """Check and normalise an output before it is committed, in one walk; returns its entries.

    `root` is a file or a folder (the output). Links stay links when their target is
    relative and resolves inside `root`; a link out of it (absolute, or escaping with
    `..`, also through other links) and FIFOs, sockets and device nodes raise
    UnsafeEntry. Setuid, setgid and sticky bits are cleared. Links are never followed.
    """
    base = os.path.realpath(root)
    out: list[Entry] = []
    todo = [""]
    while todo:
        rel = todo.pop()
        path = root / rel if rel else root
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            real = os.path.realpath(path)
            if os.path.isabs(target) or not (real == base or real.startswith(base + os.sep)):
                raise UnsafeEntry(rel or root.name, "is a link out of the output", target)
            out.append(Entry(rel, "link", target))
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket or device node"
            if stat.S_ISSOCK(st.st_mode):
                kind = "a socket"
            raise UnsafeEntry(rel or root.name, f"is {kind}, which cannot be copied")
        if st.st_mode & SPECIAL_MODE_BITS:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~SPECIAL_MODE_BITS)
        if stat.S_ISDIR(st.st_mode):
            if rel:
                out.append(Entry(rel, "dir"))
            with os.scandir(path) as it:
                todo.extend(f"{rel}/{e.name}" if rel else e.name for e in it)
        else:
            out.append(Entry(rel, "file"))
    return sorted(out, key=lambda e: e.rel)


def has_content(path: Path) -> bool:
    """Whether `path` is a folder with anything in it, or a file or link."""
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return os.path.lexists(path)
