"""A `docker save` tar read before the engine sees it: its image ID, and a copy with no tags.

The tar may come from someone else (a bundle), so two facts are taken from it here, not
from what the engine says after loading it:

- the image ID is the sha256 of the image's config blob, which manifest.json names
  (`<hex>.json` in the classic layout, `blobs/sha256/<hex>` in the OCI one); the engine
  checks each layer against the config's diff_ids, so this ID pins the whole image;
- the names it would tag (manifest.json's RepoTags, the `repositories` file, the OCI
  index's ref-name annotations) are dropped, so a load can never move a tag that already
  points at another image here.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path
from typing import Any

from containerexec.errors import UntrustedInput
from containerexec.model.names import check_relpath

MANIFEST = "manifest.json"
INDEX = "index.json"
# manifest.json and index.json list a few entries; an image config is a few KiB.
MAX_MANIFEST_BYTES = 1 << 20
MAX_CONFIG_BYTES = 16 << 20
_TAG_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError)


def image_id(path: Path, *, what: str | None = None) -> str:
    """The ID (`sha256:<hex>`) of the one image in the `docker save` tar at `path`.

    Raises UntrustedInput (naming `what`, else the path) when the tar is not one image's
    archive: no manifest.json, several images, a config it does not hold.
    """
    where = what or str(path)
    try:
        with tarfile.open(path, "r:") as tar:
            manifest = _json(tar, MANIFEST, MAX_MANIFEST_BYTES, where)
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise _bad(where, "its manifest.json does not list exactly one image")
            config = manifest[0].get("Config") if isinstance(manifest[0], dict) else None
            if not isinstance(config, str):
                raise _bad(where, "its manifest.json names no Config")
            try:
                check_relpath(config)
            except ValueError as exc:
                raise _bad(where, f"its manifest.json's Config: {exc}") from None
            data = _member_bytes(tar, config, MAX_CONFIG_BYTES, where)
    except _TAR_ERRORS as exc:
        raise _bad(where, f"not a readable image archive ({exc})") from None
    return "sha256:" + hashlib.sha256(data).hexdigest()


def untagged(src: Path, dest: Path) -> None:
    """Copy the image tar `src` to `dest` without any name to tag (member data streamed)."""
    try:
        _copy_untagged(src, dest)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        dest.unlink(missing_ok=True)
        raise _bad(str(src), f"not a readable image archive ({exc})") from None


def _copy_untagged(src: Path, dest: Path) -> None:
    with tarfile.open(src, "r:") as tar, tarfile.open(dest, "w:", format=tarfile.PAX_FORMAT) as out:
        for m in tar:
            if m.name == "repositories":
                continue
            if m.name in (MANIFEST, INDEX) and m.isfile():
                data = json.dumps(_without_tags(_json(tar, m.name, MAX_MANIFEST_BYTES, str(src))))
                info = tarfile.TarInfo(m.name)
                info.size = len(data.encode())
                info.mode = 0o644
                out.addfile(info, io.BytesIO(data.encode()))
                continue
            out.addfile(m, tar.extractfile(m) if m.isfile() else None)


def _without_tags(doc: Any) -> Any:
    if isinstance(doc, list):  # manifest.json
        return [{**e, "RepoTags": None} if isinstance(e, dict) else e for e in doc]
    if isinstance(doc, dict):  # index.json
        for m in doc.get("manifests") or []:
            notes = m.get("annotations") if isinstance(m, dict) else None
            if isinstance(notes, dict):
                for key in _TAG_ANNOTATIONS:
                    notes.pop(key, None)
    return doc


def _json(tar: tarfile.TarFile, name: str, limit: int, where: str) -> Any:
    try:
        return json.loads(_member_bytes(tar, name, limit, where))
    except (ValueError, RecursionError) as exc:
        raise _bad(where, f"its {name} is not JSON ({exc})") from None


def _member_bytes(tar: tarfile.TarFile, name: str, limit: int, where: str) -> bytes:
    try:
        m = tar.getmember(name)
    except KeyError:
        raise _bad(where, f"it has no member '{name}'") from None
    if not m.isfile():
        raise _bad(where, f"its member '{name}' is not a regular file")
    if m.size > limit:
        raise _bad(where, f"its member '{name}' is {m.size} bytes, over the {limit} allowed")
    f = tar.extractfile(m)
    assert f is not None  # a regular file
    return f.read(limit + 1)


def _bad(where: str, message: str) -> UntrustedInput:
    return UntrustedInput(
        where, f"{message}; the image archive is damaged or was edited, ask for it again"
    )


__all__ = ["image_id", "untagged"]
