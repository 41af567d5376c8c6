"""Staging folders for outputs and their atomic commit into place; input manifests."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from containerexec.model.bindings import Bindings
from containerexec.model.invocation import output_filename
from containerexec.model.spec import ModuleSpec
from containerexec.store import files


class OutputsMissing(Exception):
    """The command exited 0 but did not write a declared file output."""


def prepare(staging: Path, spec: ModuleSpec) -> None:
    """A fresh, empty staging folder per output: an attempt never sees an earlier one's files."""
    if staging.exists():
        shutil.rmtree(staging)
    for name in spec.outputs:
        (staging / name).mkdir(parents=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def check(staging: Path, spec: ModuleSpec, bindings: Bindings) -> None:
    """Raise OutputsMissing when a file output was not written."""
    for name, port in spec.outputs.items():
        if port.type == "file":
            path = staging / name / output_filename(spec, bindings, name)
            if not path.is_file():
                raise OutputsMissing(f"output '{name}': the command did not write {path.name}")


def commit(staging: Path, spec: ModuleSpec, bindings: Bindings) -> list[str]:
    """Move a succeeded attempt's outputs into place; returns the paths written.

    Each entry lands with one rename (a copy then a rename across filesystems), so a
    reader never sees a half-written file. Directory outputs of array shards merge.
    """
    written: list[str] = []
    for name, port in spec.outputs.items():
        target = Path(bindings.outputs[name])
        if port.type == "file":
            src = staging / name / output_filename(spec, bindings, name)
            _place(src, target)
            written.append(str(target))
            continue
        src_dir = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.rename(src_dir, target)
                written.append(str(target))
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EEXIST, errno.ENOTEMPTY):
                    raise
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(src_dir.iterdir()):
            _place(entry, target / entry.name)
            written.append(str(target / entry.name))
    discard(staging)
    return written


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        files.copy_then_rename(src, dest)  # another filesystem: no rename reaches it
