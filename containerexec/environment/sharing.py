"""The image as the unit of sharing: push a module's image labelled with its spec, read it back.

The pushed image is a thin layer-free image FROM the module's pinned environment
with one more label, `containerexec.spec`: the spec's YAML with `environment`
set to the pushed reference. An image cannot name its own digest, so the spec
read back from an image gets `environment.image` pinned to the digest of the
very image it came from; the run then pins that as usual.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml
from pydantic import Field

from containerexec.engine.base import Engine, ImageInfo, Progress
from containerexec.environment import images
from containerexec.errors import ContainerExecError, ImageError
from containerexec.labels import LABEL_MANAGED, LABEL_MODULE, LABEL_SPEC
from containerexec.model.spec import Environment, ModuleSpec, parse_spec
from containerexec.store.records import Record, write_json
from containerexec.store.tree import RunStore

PUSH_SCHEMA_VERSION = 1


class PushRecord(Record):
    """What `containerexec push` sent where: kept as `<runs-dir>/pushes/<module>.json`."""

    schema_version: int = PUSH_SCHEMA_VERSION
    module: str
    version: str
    to: str = Field(description="REGISTRY/REPO:TAG as pushed.")
    pinned: str = Field(description="REGISTRY/REPO@sha256:...; runs the module by itself.")
    digest: str
    image_id: str = Field(description="The pushed image (the environment plus the spec label).")
    environment: str = Field(description="The module's own pinned image it was made FROM.")
    spec_path: str | None
    pushed_at: float


def spec_yaml(spec: ModuleSpec) -> str:
    """The spec as YAML, defaults left out, in field order."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def carried_spec(spec: ModuleSpec, image_ref: str) -> str:
    """The label text: the spec with its environment replaced by the image that carries it."""
    env = Environment.model_validate({"image": image_ref})
    return spec_yaml(spec.model_copy(update={"environment": env}))


def split_target(module: str, to: str) -> tuple[str, str]:
    """'host:5000/repo[:tag]' -> ('host:5000/repo', tag or 'latest'); refuses digests."""
    images.check_reference(module, to)
    if "@" in to:
        raise ImageError(
            module,
            to,
            "--to takes REGISTRY/REPO[:TAG], not a digest: a push "
            "makes the digest; e.g. --to 127.0.0.1:5000/wordcount:1",
        )
    repo = images.repo_of(to)
    return repo, to[len(repo) + 1 :] or "latest"


def push(
    engine: Engine,
    spec: ModuleSpec,
    spec_path: Path | None,
    to: str,
    *,
    pull: str | None = None,
    labels: Mapping[str, str] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.time,
    on_progress: Progress | None = None,
    on_log: Callable[[str], None] | None = None,
) -> PushRecord:
    """Build or pull the module's image, label it with the spec, push it to `to`.

    On failure the local `to` tag is put back where it was, so nothing is half-tagged.
    """
    repo, tag = split_target(spec.name, to)
    spec_dir = spec_path.parent if spec_path else Path.cwd()
    env = images.resolve(
        engine, spec, spec_dir, pull=pull, sleep=sleep, on_progress=on_progress, on_log=on_log
    )
    thin = label_image(
        engine, spec, env.id, carried_spec(spec, f"{repo}:{tag}"), labels=labels or {}
    )
    before = engine.inspect_image(f"{repo}:{tag}")
    engine.tag(thin.id, repo, tag)
    try:
        digest = images.push_with_retries(
            engine, spec.name, repo, tag, sleep=sleep, on_progress=on_progress
        )
    except ContainerExecError:
        if before is not None and before.id != thin.id:
            engine.tag(before.id, repo, tag)
        elif before is None:
            engine.remove_image(f"{repo}:{tag}")
        raise
    return PushRecord(
        module=spec.name,
        version=spec.version,
        to=f"{repo}:{tag}",
        pinned=f"{repo}@{digest}",
        digest=digest,
        image_id=thin.id,
        environment=env.pinned,
        spec_path=str(spec_path) if spec_path else None,
        pushed_at=clock(),
    )


def label_image(
    engine: Engine,
    spec: ModuleSpec,
    base_id: str,
    text: str,
    *,
    labels: Mapping[str, str],
    on_log: Callable[[str], None] | None = None,
) -> ImageInfo:
    """`base_id` plus the spec label, tagged containerexec/<module>:spec-<hash>; built once."""
    all_labels = {**labels, LABEL_MANAGED: "1", LABEL_MODULE: spec.name, LABEL_SPEC: text}
    h = hashlib.sha256(base_id.encode())
    for key in sorted(all_labels):
        h.update(f"\0{key}\0{all_labels[key]}".encode())
    tag = f"containerexec/{spec.name}:spec-{h.hexdigest()[:16]}"
    info = engine.inspect_image(tag)
    if info is not None:
        return info
    with tempfile.TemporaryDirectory(prefix="containerexec-push-") as context:
        (Path(context) / "Dockerfile").write_text(f"FROM {base_id}\n")
        return engine.build(
            context,
            dockerfile="Dockerfile",
            tag=tag,
            buildargs={},
            target=None,
            labels=all_labels,
            on_log=on_log,
        )


def write_push_record(store: RunStore, record: PushRecord) -> Path:
    """Keep the last push of each module beside the runs; returns the file."""
    path = store.push_path(record.module)
    write_json(path, record.model_dump(mode="json"))
    return path


def spec_from_image(
    engine: Engine,
    ref: str,
    *,
    pull: str | None = None,
    sleep: Callable[[float], object] = time.sleep,
    on_progress: Progress | None = None,
) -> ModuleSpec:
    """The module spec an image carries, its environment pinned to that very image.

    The image is pulled as `pull` says (default: when missing); errors name `ref`.
    """
    info, _ = images.fetch(
        engine, None, ref, policy=pull or "missing", sleep=sleep, on_progress=on_progress
    )
    text = info.labels.get(LABEL_SPEC)
    if not text:
        raise ImageError(
            None,
            ref,
            f"carries no module spec (no '{LABEL_SPEC}' label), so it "
            "cannot run by itself; run a spec file, or make such an image with "
            "'containerexec push SPEC --to REGISTRY/REPO:TAG'",
        )
    spec = parse_spec(text, f"{ref} (label {LABEL_SPEC})")
    pinned, _ = images.pin(info, ref)
    return spec.model_copy(update={"environment": Environment.model_validate({"image": pinned})})


def inspect(
    engine: Engine,
    ref: str,
    *,
    pull: str | None = None,
    sleep: Callable[[float], object] = time.sleep,
    on_progress: Progress | None = None,
) -> str:
    """The YAML of the spec an image carries, pinned; runnable as a spec file."""
    spec = spec_from_image(engine, ref, pull=pull, sleep=sleep, on_progress=on_progress)
    return f"# module spec carried by {ref}\n{spec_yaml(spec)}"
