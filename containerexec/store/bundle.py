"""The bundle: one tar that carries what a replay on another machine needs.

    bundle.json                 BundleManifest: what is inside (written last, read first)
    runs/<run id>.json          a RunExport per run (record, shard records, log tails)
    pipeline.json               the pipeline record, for a pipeline run (kept as JSON: the
                                store layer does not know the pipeline model)
    logs/<run id>/NNNNNN.log    the end of each shard's log (at most LOG_BYTES)
    images/<id hex>.tar         with --with-image: `docker save` of each image, by ID
    inputs/<name>/...           with --with-inputs: one shard's inputs, as mounted

Secrets are never written: RunExport drops them, and the image and inputs never held them.
A name ending in .gz or .tgz gets a gzipped tar; reading takes either.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from containerexec.errors import RecordError, UntrustedInput, UsageError
from containerexec.model.names import PortName, RelPath, RunId
from containerexec.store.export import RunExport
from containerexec.store.records import SCHEMA_VERSION, Record

BUNDLE_KIND = "containerexec.bundle"
MANIFEST = "bundle.json"
LOG_BYTES = 1 << 20
DEFAULT_MAX_INPUT_BYTES = 256 << 20


class BundleImage(Record):
    id: str = Field(description="The image ID; the loaded image must have it.")
    ref: str = Field(description="The reference the runs recorded.")
    file: RelPath
    bytes: int


class BundleInput(Record):
    name: PortName
    file: RelPath = Field(description="Where it is in the bundle: inputs/<name>.")
    is_file: bool
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


@dataclass(frozen=True)
class InputSource:
    """One input to put in a bundle: a file or folder on this machine."""

    name: str
    path: Path
    is_file: bool
    made_by: str | None = None


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
    mode: Literal["w:gz", "w"] = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tarfile.open(tmp, mode) as tar:
            for ex in exports:
                _add_bytes(tar, f"runs/{ex.run.run_id}.json", ex.model_dump_json(indent=1))
            if pipeline is not None:
                _add_bytes(tar, "pipeline.json", json.dumps(pipeline, indent=1, sort_keys=True))
            for run_id, logs in (log_files or {}).items():
                for index, log in sorted(logs.items()):
                    _add_tail(tar, f"logs/{run_id}/{index:06d}.log", log)
            saved = []
            for image_id, ref in sorted((images or {}).items()):
                assert save_image is not None, "images need save_image"
                name = f"images/{image_id.removeprefix('sha256:')[:32]}.tar"
                with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".cx-image-") as d:
                    size = save_image(image_id, Path(d) / "image.tar")
                    tar.add(Path(d) / "image.tar", arcname=name)
                saved.append(BundleImage(id=image_id, ref=ref, file=name, bytes=size))
            put = []
            for i in inputs or []:
                name = f"inputs/{i.name}"
                tar.add(i.path, arcname=name, recursive=True)
                put.append(
                    BundleInput(
                        name=i.name,
                        file=name,
                        is_file=i.is_file,
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
            )
            _add_bytes(tar, MANIFEST, manifest.model_dump_json(indent=1))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


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
    """Whether `path` is a tar with a bundle manifest (cheap for a JSON file: no tar magic)."""
    try:
        if not path.is_file() or not tarfile.is_tarfile(path):
            return False
        with tarfile.open(path, "r:*") as tar:
            tar.getmember(MANIFEST)
    except (KeyError, OSError, tarfile.TarError):
        return False
    return True


class Bundle:
    """A bundle opened for reading: its manifest, runs and pipeline record, and extraction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with tarfile.open(path, "r:*") as tar:
                self.manifest = BundleManifest.model_validate_json(self._read(tar, MANIFEST))
                if self.manifest.schema_version > SCHEMA_VERSION:
                    raise RecordError(
                        str(path),
                        f"written by a newer containerexec (schema "
                        f"{self.manifest.schema_version}, this one reads {SCHEMA_VERSION}); "
                        "upgrade containerexec ('pip install -U containerexec')",
                        self.manifest.schema_version,
                    )
                self.runs = {
                    r: RunExport.model_validate_json(self._read(tar, f"runs/{r}.json"))
                    for r in self.manifest.runs
                }
                self.pipeline: dict[str, Any] | None = (
                    json.loads(self._read(tar, "pipeline.json")) if self.manifest.pipeline else None
                )
        except (OSError, tarfile.TarError, KeyError) as exc:
            raise RecordError(str(path), f"not a readable bundle: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UntrustedInput(
                str(path), f"not a valid bundle: {where}: {first['msg']}"
            ) from None

    @staticmethod
    def _read(tar: tarfile.TarFile, name: str) -> bytes:
        f = tar.extractfile(name)
        if f is None:
            raise KeyError(name)
        return f.read()

    def image_for(self, image_id: str) -> BundleImage | None:
        return next((i for i in self.manifest.images if i.id == image_id), None)

    def extract(self, member: str, dest: Path) -> Path:
        """Unpack the file or folder `member` (and what is under it) into `dest`; its path.

        The tar's own entries are filtered as untrusted data: no absolute paths, no
        links out of `dest`, no devices.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.path, "r:*") as tar:
            wanted = [
                m for m in tar.getmembers() if m.name == member or m.name.startswith(member + "/")
            ]
            tar.extractall(dest, members=wanted, filter="data")
        return dest / member


__all__ = [
    "BUNDLE_KIND",
    "DEFAULT_MAX_INPUT_BYTES",
    "Bundle",
    "BundleImage",
    "BundleInput",
    "BundleManifest",
    "InputSource",
    "check_input_size",
    "is_bundle",
    "write_bundle",
]
