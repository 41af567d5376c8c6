"""The one reader for what is taken out of a bundle: bounded, checked, all or nothing.

A bundle may come from someone else, who can edit it as they like. So every member taken
out of it is checked while it streams, before anything is kept:

- only regular files and folders (no links, FIFOs, devices), each name a relative path
  under the member asked for (Python's `data` filter, PEP 706, checks it again);
- each file's size and sha256 are the ones the bundle's own manifest lists, and every
  listed file is there;
- the bytes written stay under a cap (a `Budget` shared by everything one replay unpacks);
- it unpacks into a temp folder beside the destination, renamed into place only when
  complete, so no partial folder is ever left.

A truncated or corrupt .tar or .tar.gz, and every refusal, is an UntrustedInput (exit 2)
naming the bundle and the member.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import Field

from containerexec.errors import UntrustedInput
from containerexec.model.names import RelPath, check_relpath
from containerexec.store.records import Record

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# Why 20: gzip shrinks text and CSV data up to about 10x and image layers 2-4x, so an
# honest bundle unpacks to well under 20 times its size; zeros shrink about 1000x.
UNPACK_FACTOR = 20
MIN_UNPACK_CAP = 64 << 20  # a small bundle of very compressible data still unpacks
# What reading a cut or corrupt .tar or .tar.gz raises (BadGzipFile is an OSError).
TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class BundleFile(Record):
    """One file a bundle carries under inputs/ or images/, as it was written."""

    path: RelPath
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@dataclass
class Budget:
    """How many bytes may still be unpacked from one bundle, over every member taken out."""

    cap: int
    spent: int = 0

    @classmethod
    def for_bundle(cls, path: Path, cap: int | None = None) -> Budget:
        """`cap`, else UNPACK_FACTOR times the bundle's size (at least MIN_UNPACK_CAP)."""
        if cap is not None:
            return cls(cap)
        return cls(max(UNPACK_FACTOR * path.stat().st_size, MIN_UNPACK_CAP))


def hashed(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    h, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


@contextlib.contextmanager
def opened(path: Path) -> Iterator[tarfile.TarFile]:
    """The bundle's tar; a damaged one is an UntrustedInput naming the bundle."""
    try:
        with path.open("rb") as f:
            gz = f.read(2) == GZIP_MAGIC
        # One mode, not "r:*": its error lists every compression it tried, over 5 lines.
        tar = tarfile.open(path, "r:gz" if gz else "r:")
    except (*TAR_ERRORS, OSError) as exc:
        raise damaged(path, None, exc) from None
    with tar:
        yield tar


def damaged(path: Path, member: str | None, exc: BaseException | str) -> UntrustedInput:
    exc = " ".join(str(exc).split())  # one line, whatever the library said
    where = f" at member '{member}'" if member else ""
    return UntrustedInput(
        str(path),
        f"the bundle is cut short or corrupt{where} ({exc}); ask its sender for it again",
    )


def read_member(tar: tarfile.TarFile, path: Path, name: str, limit: int) -> bytes:
    """A regular-file member's bytes, at most `limit` of them; KeyError when it is absent
    from a whole tar, UntrustedInput naming the member a cut or corrupt one ends in."""
    try:
        m = tar.getmember(name)
    except TAR_ERRORS as exc:
        raise damaged(path, _last(tar), exc) from None
    except KeyError:
        end = getattr(tar, "members", [])
        if end and not _complete(path, end[-1]):
            raise damaged(path, end[-1].name, "the file ends inside it") from None
        raise KeyError(name) from None
    if not m.isfile():
        raise UntrustedInput(str(path), f"member '{name}' is not a regular file")
    if m.size > limit:
        raise UntrustedInput(
            str(path), f"member '{name}' is {m.size} bytes, over the {limit} bytes read of it"
        )
    try:
        f = tar.extractfile(m)
        assert f is not None  # a regular file
        data = f.read(limit + 1)
    except TAR_ERRORS as exc:
        raise damaged(path, name, exc) from None
    if len(data) != m.size:
        raise damaged(path, name, f"{len(data)} of {m.size} bytes")
    return data


def unpack(
    bundle: Path,
    member: str,
    dest: Path,
    listed: Mapping[str, BundleFile],
    budget: Budget,
) -> Path:
    """Unpack `member` (a file or a folder) of `bundle` to `dest / member`; that path.

    `listed` is what the bundle's manifest says is under `member` (path -> size, sha256).
    """
    final = dest / member
    made = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cx-unpack-", dir=final.parent))
    try:
        seen = _stream(bundle, member, tmp, listed, budget)
        missing = sorted(set(listed) - seen)
        if missing:
            raise UntrustedInput(
                str(bundle),
                f"bundle.json lists '{missing[0]}' but the tar does not hold it; "
                "ask its sender to export it again",
            )
        os.rename(tmp / member, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # innermost first: a refused bundle leaves no folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def _stream(
    bundle: Path, member: str, tmp: Path, listed: Mapping[str, BundleFile], budget: Budget
) -> set[str]:
    seen: set[str] = set()
    last: str | None = None
    end: tarfile.TarInfo | None = None
    with opened(bundle) as tar:
        try:
            for m in tar:
                last, end = m.name, m
                _allowed(bundle, m)  # anywhere in the tar: a bundle is refused whole
                if m.name.rstrip("/") == member or m.name.startswith(member + "/"):
                    _one(bundle, tar, m, tmp, listed, budget)
                    if m.isfile():
                        seen.add(m.name)
        except TAR_ERRORS as exc:
            raise damaged(bundle, last, exc) from None
    if end is not None and not _complete(bundle, end):
        raise damaged(bundle, last, "its last member ends past the end of the file")
    if member not in seen and not (tmp / member).is_dir():
        raise UntrustedInput(str(bundle), f"it has no member '{member}'; export it again")
    return seen


def _last(tar: tarfile.TarFile) -> str | None:
    """The last member read (tarfile keeps the list; typeshed does not declare it)."""
    seen: list[tarfile.TarInfo] = getattr(tar, "members", [])
    return seen[-1].name if seen else None


def _complete(bundle: Path, end: tarfile.TarInfo) -> bool:
    """Whether an uncompressed tar holds all of its last member (tarfile ends silently)."""
    with bundle.open("rb") as f:
        if f.read(2) == GZIP_MAGIC:
            return True  # a gzip stream reports its own truncation
    return end.offset_data + (end.size if end.isfile() else 0) <= bundle.stat().st_size


def _one(
    bundle: Path,
    tar: tarfile.TarFile,
    m: tarfile.TarInfo,
    tmp: Path,
    listed: Mapping[str, BundleFile],
    budget: Budget,
) -> None:
    name = m.name.rstrip("/")
    try:
        tarfile.data_filter(m, str(tmp))
    except tarfile.FilterError as exc:
        raise UntrustedInput(str(bundle), f"member '{name}': {exc}") from None
    target = tmp / name
    if m.isdir():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _twice(bundle, name) from None
        return
    want = listed.get(name)
    if want is None:
        raise UntrustedInput(
            str(bundle), f"member '{name}' is not listed in bundle.json; it was added afterwards"
        )
    if m.size != want.size:
        raise UntrustedInput(
            str(bundle),
            f"member '{name}' is {m.size} bytes but bundle.json says {want.size}; "
            "it was edited or damaged, ask its sender for it again",
        )
    if budget.spent + m.size > budget.cap:
        raise UntrustedInput(
            str(bundle),
            f"member '{name}' would unpack past {budget.cap} bytes (already {budget.spent}, "
            f"it is {m.size}); if you trust the bundle, raise the cap with --max-unpacked SIZE",
        )
    src = tar.extractfile(m)
    assert src is not None  # a regular file
    got = _write(bundle, name, src, target, want.size, budget)
    if got != want.sha256:
        raise UntrustedInput(
            str(bundle),
            f"member '{name}' has sha256 {got} but bundle.json says {want.sha256}; "
            "it was edited or damaged, ask its sender for it again",
        )


def _allowed(bundle: Path, m: tarfile.TarInfo) -> None:
    """A relative name, a regular file or a folder: what write_bundle writes, nothing else."""
    name = m.name.rstrip("/")
    try:
        check_relpath(name)
    except ValueError as exc:
        raise UntrustedInput(str(bundle), f"member {name!r}: {exc}") from None
    if not (m.isfile() or m.isdir()):
        raise UntrustedInput(
            str(bundle),
            f"member '{name}' is a {_kind(m)}; a bundle holds only files and folders, "
            "so it was edited: ask its sender for an unedited export",
        )


def _write(bundle: Path, name: str, src: IO[bytes], target: Path, size: int, budget: Budget) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise _twice(bundle, name) from None
    h, n = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(min(CHUNK, size - n + 1)):
            n += len(chunk)
            if n > size or budget.spent + len(chunk) > budget.cap:
                raise UntrustedInput(str(bundle), f"member '{name}' holds more than it declares")
            budget.spent += len(chunk)
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def _twice(bundle: Path, name: str) -> UntrustedInput:
    return UntrustedInput(
        str(bundle), f"member '{name}' appears twice or under a file; the bundle was edited"
    )


def _kind(m: tarfile.TarInfo) -> str:
    kinds = {
        tarfile.SYMTYPE: "symbolic link",
        tarfile.LNKTYPE: "hard link",
        tarfile.FIFOTYPE: "FIFO",
        tarfile.CHRTYPE: "character device",
        tarfile.BLKTYPE: "block device",
    }
    return kinds.get(m.type, f"member of tar type {m.type!r}")


__all__ = [
    "Budget",
    "BundleFile",
    "TAR_ERRORS",
    "damaged",
    "hashed",
    "opened",
    "read_member",
    "unpack",
]
