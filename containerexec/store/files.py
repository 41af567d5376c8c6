"""Copying outputs: the one place that copies a file or a folder, and copy-then-rename.

Outputs leave a container's staging folder by rename where they can; across
filesystems, into a pipeline's -o place and in and out of the cache they are
copied. Every such copy goes through `copy` here, and every copy that must appear
at once goes through `copy_then_rename`, so a reader sees the old entry or the
whole new one, never half.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


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
