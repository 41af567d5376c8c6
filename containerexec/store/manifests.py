"""Input manifests: every file's relative path, size and sha256, within a hashing budget."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec
from containerexec.store.records import FileEntry

MANIFEST_HASH_BYTES = 1 << 30


def manifest(path: str, *, hash_limit_bytes: int | None = None) -> list[tuple[str, int, str]]:
    """(relative path, size, sha256) of a file or every file under a directory, sorted.

    Past `hash_limit_bytes` of content hashed, files get an empty sha256 (size only),
    so recording a run over a huge dataset does not read all of it first.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    hashed = 0
    for f in files:
        rel = f.name if f == root else f.relative_to(root).as_posix()
        size = f.stat().st_size
        within = hash_limit_bytes is None or hashed + size <= hash_limit_bytes
        hashed += size if within else 0
        out.append((rel, size, sha256_file(f) if within else ""))
    return out


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
    """
    limit = int(os.environ.get("CONTAINEREXEC_MANIFEST_HASH_BYTES", str(MANIFEST_HASH_BYTES)))
    out = {}
    for name, value in bindings.inputs.items():
        if spec.inputs[name].type in ("file", "directory"):
            entries = manifest(value, hash_limit_bytes=limit)
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
