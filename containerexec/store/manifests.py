"""Input manifests: every file's relative path, size and sha256, within a hashing budget.

The walk that builds an input's manifest is also where inputs holding a socket, a
FIFO or a device node are refused (a read-only bind still lets a container talk to
a socket or open a device), so no input is walked twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from containerexec.errors import UsageError
from containerexec.model.bindings import Bindings
from containerexec.model.hostsafety import special_kind
from containerexec.model.spec import ModuleSpec
from containerexec.store.records import FileEntry

MANIFEST_HASH_BYTES = 1 << 30


def manifest(
    path: str, *, hash_limit_bytes: int | None = None, refuse_specials: bool = False
) -> list[tuple[str, int, str]]:
    """(relative path, size, sha256) of a file or every file under a directory, sorted.

    Past `hash_limit_bytes` of content hashed, files get an empty sha256 (size only),
    so recording a run over a huge dataset does not read all of it first. Symbolic
    links are listed as what they point to when that is a file, and never followed
    into directories.

    Raises:
        SpecialFile: with `refuse_specials`, for the first socket, FIFO or device node.
        OSError: for a file or folder that cannot be listed, read or stat'ed.
    """
    root = Path(path)
    files = [root] if root.is_file() else _files(root, refuse_specials)
    out = []
    hashed = 0
    for f in files:
        rel = f.name if f == root else f.relative_to(root).as_posix()
        size = f.stat().st_size
        within = hash_limit_bytes is None or hashed + size <= hash_limit_bytes
        hashed += size if within else 0
        out.append((rel, size, sha256_file(f) if within else ""))
    return out


class SpecialFile(Exception):
    """A socket, FIFO or device node found in a tree that must hold only files."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"'{path}' is a {kind}")
        self.path = path
        self.kind = kind


def _files(root: Path, refuse_specials: bool) -> list[Path]:
    """Regular files (and links to them) under `root`, sorted; one lstat per entry."""
    found: list[Path] = []
    folders = [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    folders.append(Path(entry.path))
                elif stat.S_ISREG(mode) or (stat.S_ISLNK(mode) and entry.is_file()):
                    found.append(Path(entry.path))
                elif refuse_specials and (kind := special_kind(mode)):
                    # A link is not checked: it resolves inside the container, not here.
                    raise SpecialFile(Path(entry.path), kind)
    return sorted(found)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_manifests(spec: ModuleSpec, bindings: Bindings) -> dict[str, list[FileEntry]]:
    """For each file or directory input: every file's relative path, size and sha256.

    Content past CONTAINEREXEC_MANIFEST_HASH_BYTES per input (default 1 GiB) is
    recorded by size only: repro then checks those files' sizes, not their bytes.

    Raises:
        UsageError: an input holds a socket, FIFO or device node, or a file in it
            cannot be read; the message names the input and the path.
    """
    limit = int(os.environ.get("CONTAINEREXEC_MANIFEST_HASH_BYTES", str(MANIFEST_HASH_BYTES)))
    out = {}
    where = f"module '{spec.name}'"
    for name, value in bindings.inputs.items():
        if spec.inputs[name].type in ("file", "directory"):
            try:
                entries = manifest(value, hash_limit_bytes=limit, refuse_specials=True)
            except SpecialFile as exc:
                raise UsageError(
                    f"{where}: input '{name}': {exc}, which would hand the host to the "
                    "container; move it out of the input or pass a folder without it"
                ) from None
            except OSError as exc:
                raise UsageError(
                    f"{where}: input '{name}': cannot read '{exc.filename or value}': "
                    f"{exc.strerror or exc}; fix its permissions or leave it out"
                ) from None
            out[name] = [FileEntry(path=p, size=n, sha256=h) for p, n, h in entries]
    return out


def input_changes(name: str, recorded: list[FileEntry], path: Path, is_file: bool) -> list[str]:
    """One line per file of input `name` at `path` that differs from its recorded manifest.

    What repro and resume check before running anything; a file recorded by size only
    (past the hashing budget) is compared by size.
    """
    if is_file:
        # A renamed copy of a file input is fine: it is mounted under the recorded name.
        local = {(recorded[0].path if len(recorded) == 1 else path.name): path}
    else:
        local = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
    want = {e.path: e for e in recorded}
    lines = []
    for rel in sorted(want.keys() | local.keys()):
        where = f"{name}/{rel}" if not is_file else f"{name} ({rel})"
        if rel not in local:
            lines.append(f"removed  {where}")
        elif rel not in want:
            lines.append(f"added    {where}")
        else:
            size = local[rel].stat().st_size
            if size != want[rel].size:
                lines.append(f"changed  {where} (size {want[rel].size} -> {size} bytes)")
            elif want[rel].sha256 and sha256_file(local[rel]) != want[rel].sha256:
                lines.append(f"changed  {where} (same size, different content)")
    return lines


def changes_since(
    spec: ModuleSpec, bindings: Bindings, recorded: dict[str, list[FileEntry]]
) -> list[str]:
    """How the inputs bound now differ from the manifests a run recorded, file by file."""
    changes = []
    for name, entries in sorted(recorded.items()):
        if name in bindings.inputs and name in spec.inputs:
            is_file = spec.inputs[name].type == "file"
            changes += input_changes(name, entries, Path(bindings.inputs[name]), is_file)
    return changes
