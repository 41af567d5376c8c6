"""Environment -> one pinned image for the whole run: build (tag = context hash) or pull,
then the module's Python packages on top (environment/pyimage.py).

A pulled image is pinned to `repo@sha256:...`, a local build to its image ID, so
every container of a run (and every retry) uses the same image even if a tag
moves in the middle of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from containerexec.engine.base import Engine, ImageInfo, Progress
from containerexec.engine.refs import registry_of
from containerexec.environment import pyimage
from containerexec.errors import BuildError, ImageError, PullError
from containerexec.labels import LABEL_CONTEXT_HASH, LABEL_MANAGED, LABEL_MODULE
from containerexec.model.spec import BASE_IMAGE, ModuleSpec
from containerexec.store.records import ImageRecord
from containerexec.store.tree import RunStore

PULL_ATTEMPTS = 4

T = TypeVar("T")

# docker's reference grammar, simplified: [host[:port]/]path[:tag][@digest]; the first part
# is a host only with a dot, a port or as localhost, else it is a (lowercase) path
_REF = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+|localhost)/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_reference(module: str | None, ref: str) -> None:
    if not _REF.match(ref):
        raise ImageError(
            module,
            ref,
            "not a valid image reference; expected "
            "[REGISTRY/]REPO[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/wordcount:1",
        )


def repo_of(ref: str) -> str:
    """'host:5000/a/b:tag@sha256:..' -> 'host:5000/a/b'."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return ref.rsplit(":", 1)[0] if ":" in last else ref


def context_hash(
    context: Path,
    dockerfile: str,
    args: dict[str, str],
    target: str | None,
    network: str | None = None,
) -> str:
    """sha256 over every file's path, mode and bytes, plus the build settings; not times."""
    h = hashlib.sha256()
    h.update(f"dockerfile={dockerfile}\ntarget={target}\n".encode())
    if network is not None:  # only when set, so the tags of earlier builds stay valid
        h.update(f"network={network}\n".encode())
    for key in sorted(args):
        h.update(f"arg {key}={args[key]}\n".encode())
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(context).as_posix()
            h.update(f"{rel}\0{path.stat().st_mode & 0o777}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"\0")
    return h.hexdigest()


def build_tag(module: str, digest: str) -> str:
    return f"containerexec/{module}:ctx-{digest[:16]}"


def pin(info: ImageInfo, ref: str) -> tuple[str, str | None]:
    """The immutable reference of an image: (pinned, digest or None).

    A digest of `ref`'s own repository, else the image ID. Never the digest of another
    repository: a local image once pushed somewhere carries that registry's digest, and
    a later repro or Slurm node would pull from a registry that may be gone.
    """
    if "@sha256:" in ref:
        return ref, ref
    repo = _familiar(repo_of(ref))
    for d in info.repo_digests:
        if _familiar(repo_of(d)) == repo:
            return d, d
    return info.id, None


def _familiar(repo: str) -> str:
    """'docker.io/library/python' -> 'python', as the engine writes Docker Hub's repo digests."""
    for prefix in ("docker.io/", "index.docker.io/"):
        repo = repo.removeprefix(prefix)
    return repo.removeprefix("library/") if repo.count("/") == 1 else repo


def resolve(
    engine: Engine,
    spec: ModuleSpec,
    spec_dir: Path,
    *,
    pull: str | None = None,
    sleep: Callable[[float], object] = time.sleep,
    on_progress: Progress | None = None,
    on_log: Callable[[str], None] | None = None,
    base_only: bool = False,
) -> ImageRecord:
    """Build or pull the module's environment once, and pin it; then install its packages
    (unless `base_only`: the image they go on, as `containerexec lock` needs it)."""
    base = _base(
        engine, spec, spec_dir, pull=pull, sleep=sleep, on_progress=on_progress, on_log=on_log
    )
    if spec.environment.python is None or base_only:
        return base
    say = (lambda text: on_log(f"packages: {text}")) if on_log else None
    return pyimage.install(engine, spec, spec_dir, base, say=say, on_log=on_log)


def _base(
    engine: Engine,
    spec: ModuleSpec,
    spec_dir: Path,
    *,
    pull: str | None,
    sleep: Callable[[float], object],
    on_progress: Progress | None,
    on_log: Callable[[str], None] | None,
) -> ImageRecord:
    """The image under the module's Python packages (or its whole environment), pinned."""
    env = spec.environment
    if env.build is not None:
        return build(engine, spec, spec_dir, on_log=on_log)
    if env.image is None:
        info = engine.inspect_image(BASE_IMAGE)
        if info is None:
            raise ImageError(
                spec.name,
                BASE_IMAGE,
                "environment.python with no image installs on this base image, and it is "
                "not on this engine; build it ('make base-image' in the containerexec "
                "checkout) or name one in environment.image",
            )
        return ImageRecord(ref=BASE_IMAGE, pinned=info.id, id=info.id, source="local")
    info, source = fetch(
        engine, spec.name, env.image, policy=pull or env.pull, sleep=sleep, on_progress=on_progress
    )
    pinned, digest = pin(info, env.image)
    return ImageRecord(ref=env.image, pinned=pinned, id=info.id, digest=digest, source=source)


def fetch(
    engine: Engine,
    module: str | None,
    ref: str,
    *,
    policy: str,
    sleep: Callable[[float], object] = time.sleep,
    on_progress: Progress | None = None,
) -> tuple[ImageInfo, Literal["pull", "local"]]:
    """The image `ref` on this engine, pulled as `policy` (missing | always | never) says."""
    check_reference(module, ref)
    local = engine.inspect_image(ref)
    if policy == "never" or (policy == "missing" and local is not None):
        if local is None:
            raise ImageError(
                module,
                ref,
                "not on this engine and the pull policy is 'never'; pull it or use --pull missing",
            )
        return local, "local"
    try:
        return pull_with_retries(engine, module, ref, sleep=sleep, on_progress=on_progress), "pull"
    except PullError:
        if local is None:
            raise
        return local, "local"  # offline: the image we need is already here


def _retrying(sleep: Callable[[float], object]) -> Retrying:
    """Retry transient registry failures (refused, 5xx, timeouts), never a permanent answer."""

    def nap(seconds: float) -> None:
        sleep(seconds)

    return Retrying(
        stop=stop_after_attempt(PULL_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(lambda e: isinstance(e, PullError) and e.transient),
        sleep=nap,
        reraise=True,
    )


def pull_with_retries(
    engine: Engine,
    module: str | None,
    ref: str,
    *,
    sleep: Callable[[float], object],
    on_progress: Progress | None = None,
) -> ImageInfo:
    """Pull, retrying transient failures (refused, 5xx, timeouts) but never a permanent answer.

    Raises:
        PullError: naming `module`, worded by `registry_advice`.
    """
    return _with_retries(module, sleep, lambda: engine.pull(ref, on_progress=on_progress))


def push_with_retries(
    engine: Engine,
    module: str | None,
    repo: str,
    tag: str,
    *,
    sleep: Callable[[float], object],
    on_progress: Progress | None = None,
) -> str:
    """Push repo:tag with the same retries as a pull; returns the manifest digest."""

    def push() -> str:
        digest = engine.push(repo, tag, on_progress=on_progress)
        if not digest.startswith("sha256:"):
            raise PullError(
                None,
                f"{repo}:{tag}",
                "the registry reported no digest",
                failure="rejected",
                operation="push",
            )
        return digest

    return _with_retries(module, sleep, push)


def _with_retries(module: str | None, sleep: Callable[[float], object], fn: Callable[[], T]) -> T:
    attempts = 0
    try:
        for attempt in _retrying(sleep):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return fn()
    except PullError as exc:
        advice = registry_advice(exc, attempts)
        raise exc.advised(module=module, attempts=attempts, advice=advice) from None
    raise AssertionError("unreachable")


def registry_advice(exc: PullError, attempts: int = 1) -> str:
    """A failed pull or push in one line: what the registry said, and the next step.

    The one wording of registry failures; `exc.failure` (the engine adapter's
    classification) picks it, and nothing here reads the answer's text.
    """
    verb, host = exc.operation or "pull", registry_of(exc.ref)
    answer = " ".join(exc.answer.split())[:300]
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if exc.failure == "not-found" and "@sha256:" in exc.ref:
        return (
            f"{verb} failed: this digest is gone from its registry ({answer}), so this "
            "exact image cannot be pulled; ask whoever ran it to push that image again"
        )
    if exc.failure == "denied":
        login = f"'{exc.login}'" if exc.login else "your engine's login command"
        return (
            f"{verb} failed: registry '{host}' refused the {verb} ({answer}); "
            f"log in ({login}) and retry"
        )
    if exc.failure == "unavailable":
        return (
            f"{verb} failed{tried}: {answer}; check that the registry '{host}' is up "
            "and reachable from this engine"
        )
    if exc.failure == "unreachable":
        return (
            f"{verb} failed{tried} ({answer}): registry '{host}' does not answer; "
            "start it or check that this engine can reach it, then retry"
        )
    return (
        f"{verb} failed{tried}: {answer}; check the reference (registry, repository, "
        "tag or digest), or build or push the image first"
    )


def build(
    engine: Engine,
    spec: ModuleSpec,
    spec_dir: Path,
    *,
    on_log: Callable[[str], None] | None = None,
) -> ImageRecord:
    """Build `environment.build` unless an image of the same context hash exists."""
    b = spec.environment.build
    assert b is not None
    context = (spec_dir / b.context).resolve()
    if not context.is_dir():
        raise ImageError(
            spec.name,
            str(context),
            "build context does not exist; fix "
            "environment.build.context (it is relative to the spec file)",
        )
    if not (context / b.dockerfile).is_file():
        raise ImageError(
            spec.name,
            str(context / b.dockerfile),
            "no Dockerfile there; fix environment.build.dockerfile",
        )
    digest = _build_hash(spec, context)
    tag = build_tag(spec.name, digest)
    info = engine.inspect_image(tag)
    if info is None:
        labels = {LABEL_MANAGED: "1", LABEL_MODULE: spec.name, LABEL_CONTEXT_HASH: digest}
        try:
            info = engine.build(
                str(context),
                dockerfile=b.dockerfile,
                tag=tag,
                buildargs=b.args,
                target=b.target,
                labels=labels,
                network=b.network,
                on_log=on_log,
            )
        except BuildError as exc:
            raise exc.with_module(spec.name) from None
    return ImageRecord(ref=tag, pinned=info.id, id=info.id, digest=None, source="build")


def context_changed(spec: ModuleSpec, spec_dir: Path, image: ImageRecord) -> Path | None:
    """The build folder, when building it now would give another image than the run's.

    Read-only: hashes the folder as `build` would and compares the tag with the one the
    run recorded; builds nothing. None for a module that is not built from a folder.
    """
    b = spec.environment.build
    if b is None or image.source != "build":
        return None
    context = (spec_dir / b.context).resolve()
    if not (context / b.dockerfile).is_file():
        return context  # gone or moved: it cannot give the run's image any more
    tag = build_tag(spec.name, _build_hash(spec, context))
    return None if tag == image.ref else context


def _build_hash(spec: ModuleSpec, context: Path) -> str:
    """The context hash of `environment.build`: the one call, so that `build` and the
    resume check (`context_changed`) hash the same settings."""
    b = spec.environment.build
    assert b is not None
    return context_hash(context, b.dockerfile, b.args, b.target, b.network)


@dataclass(frozen=True)
class LocalImage:
    """An image on the engine that containerexec built, pulled or pushed."""

    id: str
    module: str
    reference: str
    digest: str | None
    size: int
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    managed: bool
    runs: int = 0
    last_used: float | None = None


@dataclass(frozen=True)
class Use:
    module: str
    runs: int
    last_used: float


def run_uses(store: RunStore) -> dict[str, Use]:
    """Image ID -> which module's runs used it, how many, and when last, from the run records."""
    uses: dict[str, Use] = {}
    for run_id in store.ids():
        rec = store.load_run(run_id)
        old = uses.get(rec.image.id)
        uses[rec.image.id] = Use(
            module=rec.module,
            runs=(old.runs if old else 0) + 1,
            last_used=max(rec.started_at, old.last_used if old else rec.started_at),
        )
    return uses


def local_images(engine: Engine, store: RunStore, *, module: str | None = None) -> list[LocalImage]:
    """Images labelled as containerexec's (builds, pushes) plus those run records used."""
    uses = run_uses(store)
    found = {i.id: i for i in engine.images({LABEL_MANAGED: ""})}
    for image_id in uses.keys() - found.keys():
        info = engine.inspect_image(image_id)
        if info is not None:
            found[info.id] = info
    out = []
    for info in found.values():
        use = uses.get(info.id)
        name = info.labels.get(LABEL_MODULE) or (use.module if use else "-")
        if module is not None and name != module:
            continue
        tags = tuple(t for t in info.tags if t != "<none>:<none>")
        digests = tuple(d for d in info.repo_digests if "@" in d)
        out.append(
            LocalImage(
                id=info.id,
                module=name,
                reference=(tags or digests or (info.id,))[0],
                digest=digests[0].split("@", 1)[1] if digests else None,
                size=info.size,
                tags=tags,
                repo_digests=digests,
                managed=info.labels.get(LABEL_MANAGED) == "1",
                runs=use.runs if use else 0,
                last_used=use.last_used if use else None,
            )
        )
    return sorted(out, key=lambda i: (i.module, i.reference))


def prune(
    engine: Engine, store: RunStore, *, module: str | None = None, dry_run: bool = False
) -> list[LocalImage]:
    """Remove containerexec's images that no run record in `store` needs; returns them.

    Images are removed by name (each tag and digest), so an image another one is
    built FROM only loses its names; its layers go with the last image using them.
    """
    victims = [i for i in local_images(engine, store, module=module) if i.managed and i.runs == 0]
    if not dry_run:
        for image in victims:
            for ref in image.tags + image.repo_digests or (image.id,):
                engine.remove_image(ref)
    return victims
