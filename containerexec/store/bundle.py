"""The bundle: one tar that carries what a replay on another machine needs.

    bundle.json                 BundleManifest: what is inside (written last, read first)
    runs/<run id>.json          a RunExport per run (record, shard records, log tails)
    pipeline.json               the pipeline record, for a pipeline run (kept as JSON: the
                                store layer does not know the pipeline model)
    logs/<run id>/NNNNNN.log    the end of each shard's log (at most LOG_BYTES)
    images/<id hex>.tar         with --with-image: `docker save` of each image, by ID
    inputs/<name>/...           with --with-inputs: one shard's inputs, as mounted (a glob
                                shard that mounted its own file: inputs/<name>/<its file>)

bundle.json lists every file under images/ and inputs/ with its size and sha256, and
everything taken out of a bundle goes through store/unpacker.py, which checks them. A
bundle written before those lists existed still replays from its records, but nothing is
unpacked from it ("export it again").

Secrets are never written: RunExport drops them, and the image and inputs never held them.
A name ending in .gz or .tgz gets a gzipped tar; reading takes either.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, ValidationError

from containerexec.errors import RecordError, UntrustedInput, UsageError
from containerexec.model.names import PortName, RelPath, RunId, ShardFile
from containerexec.store import unpacker
from containerexec.store.export import RunExport
from containerexec.store.records import SCHEMA_VERSION, Record
from containerexec.store.unpacker import Budget, BundleFile

BUNDLE_KIND = "containerexec.bundle"
MANIFEST = "bundle.json"
LOG_BYTES = 1 << 20
DEFAULT_MAX_INPUT_BYTES = 256 << 20
# How much of a JSON member is read: bundle.json and pipeline.json are small; a run's
# export holds its shard records (log tails are separate members).
MAX_MANIFEST_BYTES = 16 << 20
MAX_RUN_BYTES = 256 << 20


class BundleImage(Record):
    id: str = Field(description="The image ID; the loaded image must have it.")
    ref: str = Field(description="The reference the runs recorded.")
    file: RelPath
    bytes: int


class BundleInput(Record):
    name: PortName
    file: RelPath = Field(description="Where it is in the bundle: inputs/<name>.")
    is_file: bool
    shard_file: ShardFile = Field(
        "",
        description="A glob shard's own file, when only it was mounted: it is stored as "
        "inputs/<name>/<shard_file>, and inputs/<name> is given as the input's folder.",
    )
    bytes: int
    made_by: str | None = Field(None, description="The pipeline job whose output it is.")


class BundleManifest(Record):
    kind: Literal["containerexec.bundle"] = "containerexec.bundle"
    schema_version: int = SCHEMA_VERSION
    runs: list[RunId] = Field(description="The run ids inside, pipeline jobs in pipeline order.")
    pipeline: RunId | None = Field(None, description="The pipeline run id, for a pipeline.")
    images: list[BundleImage] = Field(default_factory=list)
    inputs_run: RunId | None = Field(None, description="The run whose shard's inputs are inside.")
    inputs_shard: int | None = None
    inputs: list[BundleInput] = Field(default_factory=list)
    files: list[BundleFile] | None = Field(
        None,
        description="Every file under images/ and inputs/ with its size and sha256; None in "
        "a bundle written before these were listed (nothing is unpacked from it).",
    )


@dataclass(frozen=True)
class InputSource:
    """One input to put in a bundle: a file or folder on this machine."""

    name: str
    path: Path
    is_file: bool
    made_by: str | None = None
    shard_file: str = ""


def tree_bytes(path: Path) -> int:
    """The content size of a file or of every file under a folder (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def check_input_size(what: str, inputs: list[InputSource], limit: int) -> list[int]:
    """Each input's size; UsageError naming every size when the sum is over `limit`."""
    missing = [f"'{i.name}' ({i.path})" for i in inputs if not i.path.exists()]
    if missing:
        raise UsageError(
            f"--with-inputs: the inputs of {what} are not here any more: "
            f"{', '.join(missing)}; export without --with-inputs and send the data another way"
        )
    sizes = [tree_bytes(i.path) for i in inputs]
    if sum(sizes) > limit:
        each = ", ".join(f"{i.name} {_mib(n)}" for i, n in zip(inputs, sizes, strict=True))
        raise UsageError(
            f"--with-inputs: the inputs of {what} come to {_mib(sum(sizes))} ({each}), over "
            f"the limit of {_mib(limit)}; raise it with --max-input-bytes {sum(sizes)}, or "
            "export without --with-inputs and send the data another way"
        )
    return sizes


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def write_bundle(
    dest: Path,
    exports: list[RunExport],
    *,
    pipeline: dict[str, Any] | None = None,
    log_files: dict[str, dict[int, Path]] | None = None,
    images: dict[str, str] | None = None,
    save_image: Callable[[str, Path], int] | None = None,
    inputs: list[InputSource] | None = None,
    inputs_of: tuple[str, int] | None = None,
) -> BundleManifest:
    """Write the bundle to `dest` (a temp file renamed into place: never half a bundle).

    `images` maps image IDs to the reference the runs recorded; `save_image(id, path)`
    writes one as a `docker save` tar.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    gz = dest.name.endswith((".gz", ".tgz"))
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # gzip's own default level: 9, tarfile's, takes about twice as long on an image.
        opened = tarfile.open(tmp, "w:gz", compresslevel=6) if gz else tarfile.open(tmp, "w")
        with opened as tar:
            for ex in exports:
                _add_bytes(tar, f"runs/{ex.run.run_id}.json", ex.model_dump_json(indent=1))
            if pipeline is not None:
                _add_bytes(tar, "pipeline.json", json.dumps(pipeline, indent=1, sort_keys=True))
            for run_id, logs in (log_files or {}).items():
                for index, log in sorted(logs.items()):
                    _add_tail(tar, f"logs/{run_id}/{index:06d}.log", log)
            saved, files = [], []
            for image_id, ref in sorted((images or {}).items()):
                assert save_image is not None, "images need save_image"
                name = f"images/{image_id.removeprefix('sha256:')[:32]}.tar"
                with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".cx-image-") as d:
                    size = save_image(image_id, Path(d) / "image.tar")
                    files.append(_add_file(tar, Path(d) / "image.tar", name))
                saved.append(BundleImage(id=image_id, ref=ref, file=name, bytes=size))
            put = []
            for i in inputs or []:
                name = f"inputs/{i.name}"
                if i.shard_file:
                    _add_dirs(tar, name, i.shard_file)
                    files.append(_add_file(tar, i.path, f"{name}/{i.shard_file}"))
                else:
                    files += _add_tree(tar, i.path, name)
                put.append(
                    BundleInput(
                        name=i.name,
                        file=name,
                        is_file=i.is_file,
                        shard_file=i.shard_file,
                        bytes=tree_bytes(i.path),
                        made_by=i.made_by,
                    )
                )
            manifest = BundleManifest(
                runs=[ex.run.run_id for ex in exports],
                pipeline=str(pipeline["id"]) if pipeline else None,
                images=saved,
                inputs_run=inputs_of[0] if inputs_of else None,
                inputs_shard=inputs_of[1] if inputs_of else None,
                inputs=put,
                files=files,
            )
            _add_bytes(tar, MANIFEST, manifest.model_dump_json(indent=1))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


class _Hashing:
    """A file read by tarfile, hashed and counted on the way."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> BundleFile:
    """A regular file (a link to one is followed) as member `name`; its manifest entry."""
    info = tarfile.TarInfo(name)
    with path.open("rb") as f:
        info.size = os.fstat(f.fileno()).st_size
        info.mode = 0o644
        h = _Hashing(f)
        tar.addfile(info, h)
    return BundleFile(path=name, size=h.size, sha256=h.sha.hexdigest())


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_dirs(tar: tarfile.TarFile, top: str, rel: str) -> None:
    """`top` and each folder of `rel` inside it."""
    parts = [top, *rel.split("/")[:-1]]
    for n in range(1, len(parts) + 1):
        _add_dir(tar, "/".join(parts[:n]))


def _add_tree(tar: tarfile.TarFile, root: Path, name: str) -> list[BundleFile]:
    """A file or a folder's files and folders (links to files followed, to folders and
    anything else that is not a file left out: a reader refuses links)."""
    if root.is_file():
        return [_add_file(tar, root, name)]
    _add_dir(tar, name)
    files = []
    for here, dirs, names in os.walk(root):
        dirs.sort()
        rel = Path(here).relative_to(root).as_posix()
        prefix = name if rel == "." else f"{name}/{rel}"
        for d in list(dirs):
            if (Path(here) / d).is_symlink():
                dirs.remove(d)
            else:
                _add_dir(tar, f"{prefix}/{d}")
        for n in sorted(names):
            if (Path(here) / n).is_file():
                files.append(_add_file(tar, Path(here) / n, f"{prefix}/{n}"))
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_tail(tar: tarfile.TarFile, name: str, path: Path) -> None:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LOG_BYTES))
            data = f.read()
    except OSError:
        return  # a shard that never started has no log
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def is_bundle(path: Path) -> bool:
    """Whether `path` looks like a tar or a gzip (a bundle, or a damaged one: Bundle says
    which), not JSON. Cheap: reads the file's first 265 bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(265)
    except OSError:
        return False
    return head[:2] == unpacker.GZIP_MAGIC or head[257:262] == b"ustar"


class Bundle:
    """A bundle opened for reading: its manifest, runs and pipeline record, and extraction.

    `max_unpacked` caps the bytes everything taken out of it may unpack to (default:
    unpacker.Budget.for_bundle, a multiple of the bundle's size).
    """

    def __init__(self, path: Path, *, max_unpacked: int | None = None) -> None:
        self.path = path
        try:
            self.budget = Budget.for_bundle(path, max_unpacked)
            with unpacker.opened(path) as tar:
                self.manifest = BundleManifest.model_validate_json(
                    self._read(tar, MANIFEST, MAX_MANIFEST_BYTES)
                )
                if self.manifest.schema_version > SCHEMA_VERSION:
                    raise RecordError(
                        str(path),
                        f"written by a newer containerexec (schema "
                        f"{self.manifest.schema_version}, this one reads {SCHEMA_VERSION}); "
                        "upgrade containerexec ('pip install -U containerexec')",
                        self.manifest.schema_version,
                    )
                self.runs = {
                    r: RunExport.model_validate_json(
                        self._read(tar, f"runs/{r}.json", MAX_RUN_BYTES)
                    )
                    for r in self.manifest.runs
                }
                self.pipeline: dict[str, Any] | None = (
                    json.loads(self._read(tar, "pipeline.json", MAX_MANIFEST_BYTES))
                    if self.manifest.pipeline
                    else None
                )
        except OSError as exc:
            raise RecordError(str(path), f"not a readable bundle: {exc}") from None
        except unpacker.TAR_ERRORS as exc:
            raise unpacker.damaged(path, None, exc) from None
        except KeyError as exc:
            raise UntrustedInput(
                str(path),
                f"the bundle has no member '{exc.args[0]}': it is cut short or was edited; ask its "
                "sender for it again",
            ) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UntrustedInput(
                str(path), f"not a valid bundle: {where}: {first['msg']}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise UntrustedInput(str(path), f"not a valid bundle: pipeline.json: {exc}") from None

    def _read(self, tar: tarfile.TarFile, name: str, limit: int) -> bytes:
        return unpacker.read_member(tar, self.path, name, limit)

    def image_for(self, image_id: str) -> BundleImage | None:
        return next((i for i in self.manifest.images if i.id == image_id), None)

    def extract(self, member: str, dest: Path) -> Path:
        """Unpack the file or folder `member` (and what is under it) to `dest / member`,
        checked against the manifest and within the budget (store/unpacker.py); its path.

        Raises UntrustedInput for anything the bundle's own manifest does not vouch for.
        """
        if self.manifest.files is None:
            raise UntrustedInput(
                str(self.path),
                "written by an older containerexec that did not list its files' sha256, so "
                f"'{member}' cannot be checked and is not unpacked; export it again with "
                "this version",
            )
        listed = {
            f.path: f
            for f in self.manifest.files
            if f.path == member or f.path.startswith(member + "/")
        }
        return unpacker.unpack(self.path, member, dest, listed, self.budget)


__all__ = [
    "BUNDLE_KIND",
    "Budget",
    "DEFAULT_MAX_INPUT_BYTES",
    "Bundle",
    "BundleImage",
    "BundleFile",
    "BundleInput",
    "BundleManifest",
    "InputSource",
    "check_input_size",
    "is_bundle",
    "write_bundle",
]
