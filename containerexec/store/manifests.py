"""Input manifests: every file's relative path, size and sha256, within a hashing budget."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
