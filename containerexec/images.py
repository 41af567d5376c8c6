"""Environment -> one pinned image for the whole run: build (tag = context hash) or pull.

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
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .engine import Engine, ImageInfo, Progress
from .errors import BuildError, ImageError, PullError
from .records import ImageRecord
from .spec import ModuleSpec

LABEL_MANAGED = "containerexec.managed"
LABEL_MODULE = "containerexec.module"
LABEL_SPEC = "containerexec.spec"
LABEL_CONTEXT = "containerexec.context-hash"
PULL_ATTEMPTS = 4

# docker's reference grammar, simplified: [host[:port]/]path[:tag][@digest]
_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def check_reference(module: str, ref: str) -> None:
    if not _REF.match(ref):
        raise ImageError(module, ref, "not a valid image reference; expected "
                         "[REGISTRY/]REPO[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/wordcount:1")


def repo_of(ref: str) -> str:
    """'host:5000/a/b:tag@sha256:..' -> 'host:5000/a/b'."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return ref.rsplit(":", 1)[0] if ":" in last else ref


def context_hash(context: Path, dockerfile: str, args: dict[str, str], target: str | None) -> str:
    """sha256 over every file's path, mode and bytes, plus the build settings; not times."""
    h = hashlib.sha256()
    h.update(f"dockerfile={dockerfile}\ntarget={target}\n".encode())
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
    """The immutable reference of an image: (pinned, digest or None)."""
    if "@sha256:" in ref:
        return ref, ref
    repo = repo_of(ref)
    for d in info.repo_digests:
        if repo_of(d) == repo or d.startswith(repo + "@"):
            return d, d
    if info.repo_digests:
        return info.repo_digests[0], info.repo_digests[0]
    return info.id, None


def resolve(
    engine: Engine,
    spec: ModuleSpec,
    spec_dir: Path,
    *,
    pull: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Progress | None = None,
    on_log: Callable[[str], None] | None = None,
) -> ImageRecord:
    """Build or pull the module's environment once, and pin it."""
    env = spec.environment
    if env.build is not None:
        return build(engine, spec, spec_dir, on_log=on_log)
    assert env.image is not None
    ref = env.image
    check_reference(spec.name, ref)
    policy = pull or env.pull
    local = engine.inspect_image(ref)
    if policy == "never" or (policy == "missing" and local is not None):
        if local is None:
            raise ImageError(spec.name, ref, "not on this engine and the pull policy is 'never'; "
                             "pull it or use --pull missing")
        pinned, digest = pin(local, ref)
        return ImageRecord(ref=ref, pinned=pinned, id=local.id, digest=digest, source="local")
    try:
        info = pull_with_retries(engine, spec.name, ref, sleep=sleep, on_progress=on_progress)
        source = "pull"
    except PullError:
        if local is None:
            raise
        info, source = local, "local"  # offline: the image we need is already here
    pinned, digest = pin(info, ref)
    return ImageRecord(ref=ref, pinned=pinned, id=info.id, digest=digest, source=source)  # type: ignore[arg-type]


def pull_with_retries(
    engine: Engine, module: str, ref: str, *, sleep: Callable[[float], None],
    on_progress: Progress | None = None,
) -> ImageInfo:
    """Pull, retrying transient failures (refused, 5xx, timeouts) but never a permanent answer."""
    retrying = Retrying(
        stop=stop_after_attempt(PULL_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(lambda e: isinstance(e, PullError) and e.transient),
        sleep=sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                return engine.pull(ref, on_progress=on_progress)
    except PullError as exc:
        tries = f" after {PULL_ATTEMPTS} attempts" if exc.transient else ""
        raise PullError(module, ref, f"pull failed{tries}: {exc.answer}",
                        transient=exc.transient) from None
    raise AssertionError("unreachable")


def build(
    engine: Engine, spec: ModuleSpec, spec_dir: Path, *,
    on_log: Callable[[str], None] | None = None,
) -> ImageRecord:
    """Build `environment.build` unless an image of the same context hash exists."""
    b = spec.environment.build
    assert b is not None
    context = (spec_dir / b.context).resolve()
    if not context.is_dir():
        raise ImageError(spec.name, str(context), "build context does not exist; fix "
                         "environment.build.context (it is relative to the spec file)")
    if not (context / b.dockerfile).is_file():
        raise ImageError(spec.name, str(context / b.dockerfile), "no Dockerfile there; fix "
                         "environment.build.dockerfile")
    digest = context_hash(context, b.dockerfile, b.args, b.target)
    tag = build_tag(spec.name, digest)
    info = engine.inspect_image(tag)
    if info is None:
        labels = {LABEL_MANAGED: "1", LABEL_MODULE: spec.name, LABEL_CONTEXT: digest}
        try:
            info = engine.build(str(context), dockerfile=b.dockerfile, tag=tag,
                                buildargs=b.args, target=b.target, labels=labels, on_log=on_log)
        except BuildError as exc:
            raise BuildError(spec.name, tag, str(exc).split(": build failed: ", 1)[-1]
                             .split("\n")[0], exc.log_tail) from None
    return ImageRecord(ref=tag, pinned=info.id, id=info.id, digest=None, source="build")
