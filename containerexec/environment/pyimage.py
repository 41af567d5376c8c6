"""The image of a module's Python packages: the base image plus its locked wheels,
installed with no network and every hash checked; tagged by a hash of both.

The tag `containerexec/<module>:py-<hash>` is a hash of the base image's ID, the
lock and this install recipe, so an unchanged package set on an unchanged base is
found by one image lookup and never rebuilt (and the base is not even asked for its
platform).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from containerexec.engine.base import Engine, ImageInfo
from containerexec.environment import locks, packages
from containerexec.environment.locks import Lock
from containerexec.errors import BuildError, PackageError
from containerexec.labels import LABEL_LOCK, LABEL_MANAGED, LABEL_MODULE
from containerexec.model.spec import ModuleSpec
from containerexec.store.records import ImageRecord

Say = Callable[[str], None]

# Stage one installs into /cx-root with pip run from its own wheel (the image needs no
# pip); stage two copies only the installed files, so the wheels never reach the image.
# `--root` also keeps pip from refusing a distribution's "externally managed" Python.
DOCKERFILE = """\
FROM {base} AS install
USER root
COPY wheels /cx-wheels
RUN ["python3", "/cx-wheels/{pip}/pip", "install", "--no-index", "--find-links", "/cx-wheels", \
"--require-hashes", "--no-deps", "--root", "/cx-root", "--no-cache-dir", \
"--disable-pip-version-check", "--no-warn-script-location", "-r", "/cx-wheels/requirements.txt"]
FROM {base}
COPY --from=install /cx-root/ /
"""
RECIPE = hashlib.sha256(DOCKERFILE.encode()).hexdigest()[:12]


def packages_tag(module: str, base_id: str, lock: Lock) -> str:
    h = hashlib.sha256(f"{base_id}\n{lock.sha256()}\n{RECIPE}".encode()).hexdigest()
    return f"containerexec/{module}:py-{h[:16]}"


def install(
    engine: Engine,
    spec: ModuleSpec,
    spec_dir: Path,
    base: ImageRecord,
    *,
    say: Say | None = None,
    on_log: Callable[[str], None] | None = None,
) -> ImageRecord:
    """`base` with the module's locked packages; resolves and writes the lock if there is none.

    Raises:
        PackageError: the declared packages no longer match the lock, or the lock does
            not fit the image's platform, or a package cannot be resolved or installed.
    """
    say = say or (lambda _: None)
    python = spec.environment.python
    assert python is not None
    requires = locks.declared(spec.name, python, spec_dir)
    path = locks.lock_path(spec.name, spec_dir)
    lock = locks.read_lock(path, spec.name)
    target = None
    if lock is not None:
        changes = locks.requires_changes(lock, requires)
        if changes:
            raise PackageError(
                spec.name,
                f"environment.python changed since the lock {path} was written; run "
                "'containerexec lock SPEC' to resolve the packages again:",
                lock_path=str(path),
                changes=changes,
            )
    else:
        target = packages.probe(engine, spec.name, base.pinned)
        lock = packages.resolve(spec.name, requires, target, cache=packages.wheel_cache(), say=say)
        _write(path, lock, say)
    tag = packages_tag(spec.name, base.id, lock)
    info = engine.inspect_image(tag)
    if info is None:
        target = target or packages.probe(engine, spec.name, base.pinned)
        if target != lock.target:
            raise PackageError(
                spec.name,
                f"the lock {path} is for {lock.target.describe()} (Python {lock.target.python}),"
                f" but image '{base.ref}' is {target.describe()} (Python {target.python}); run "
                "'containerexec lock SPEC' to resolve the packages for it",
                lock_path=str(path),
            )
        files = packages.fetch(lock, cache=packages.wheel_cache(), say=say)
        info = _build(engine, spec.name, base, lock, files, tag, say=say, on_log=on_log)
    return ImageRecord(
        ref=tag,
        pinned=info.id,
        id=info.id,
        digest=None,
        source="build",
        lock_sha256=lock.sha256(),
    )


def relock(
    engine: Engine, spec: ModuleSpec, spec_dir: Path, base: ImageRecord, *, say: Say | None = None
) -> tuple[Path, Lock | None, Lock]:
    """Resolve the module's packages again for `base` and write the lock; (path, old, new)."""
    say = say or (lambda _: None)
    python = spec.environment.python
    assert python is not None
    requires = locks.declared(spec.name, python, spec_dir)
    path = locks.lock_path(spec.name, spec_dir)
    try:
        old = locks.read_lock(path, spec.name)
    except PackageError:
        old = None  # unreadable: replaced whole
    target = packages.probe(engine, spec.name, base.pinned)
    new = packages.resolve(spec.name, requires, target, cache=packages.wheel_cache(), say=say)
    _write(path, new, say)
    return path, old, new


def _write(path: Path, lock: Lock, say: Say) -> None:
    try:
        locks.write_lock(path, lock)
    except OSError as exc:
        say(f"could not write the lock {path} ({exc.strerror or exc}); going on without it")
        return
    say(f"wrote {path} ({len(lock.packages)} packages, sha256 {lock.sha256()[:12]})")


def _build(
    engine: Engine,
    module: str,
    base: ImageRecord,
    lock: Lock,
    files: dict[str, Path],
    tag: str,
    *,
    say: Say,
    on_log: Callable[[str], None] | None,
) -> ImageInfo:
    say(f"installing {len(lock.packages)} locked packages on {base.ref} (no network)")
    with tempfile.TemporaryDirectory(prefix="containerexec-py-") as tmp:
        context = Path(tmp)
        wheels = context / "wheels"
        wheels.mkdir()
        for name, path in files.items():
            _link(path, wheels / name)
        (wheels / "requirements.txt").write_text(
            "".join(f"{f.name}=={f.version} --hash=sha256:{f.sha256}\n" for f in lock.packages)
        )
        (context / "Dockerfile").write_text(
            DOCKERFILE.format(base=base.pinned, pip=lock.installer.file)
        )
        labels = {LABEL_MANAGED: "1", LABEL_MODULE: module, LABEL_LOCK: lock.sha256()}
        try:
            return engine.build(
                str(context),
                dockerfile="Dockerfile",
                tag=tag,
                buildargs={},
                target=None,
                labels=labels,
                network="none",
                on_log=on_log,
            )
        except BuildError as exc:
            said = [ln.removeprefix("ERROR: ") for ln in exc.log_tail if "ERROR:" in ln]
            raise PackageError(
                module,
                f"pip could not install the locked packages on '{base.ref}': "
                f"{said[-1] if said else exc.message}",
            ) from None


def _link(src: Path, dst: Path) -> None:
    """A hard link where the cache and the temporary folder share a filesystem, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
