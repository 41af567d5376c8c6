"""The package lock: the exact files (name, version, sha256) a module's Python packages are.

A lock sits beside the spec as `<module name>.lock` (JSON, canonical form, so its
sha256 is the hash recorded in run records). It says what was declared, the
interpreter and platform it was resolved for, the pip wheel that installs it, and
every wheel. A build that finds one uses it as it is; one whose declared packages
no longer match is refused with what changed, and `containerexec lock` rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from containerexec.errors import PackageError
from containerexec.model.spec import PythonPackages

LOCK_SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """The interpreter and platform wheels must fit, as the image itself reported them."""

    python: str = Field(description="major.minor, e.g. '3.11'.")
    implementation: str = Field(description="'cp' for CPython.")
    abi: str = Field(description="e.g. 'cp311'.")
    platforms: list[str] = Field(description="Platform tags, most specific first.")

    def describe(self) -> str:
        """'cp311 manylinux_2_36_x86_64': what a message names as the platform."""
        return f"{self.abi} {self.platforms[0] if self.platforms else 'any'}"


class LockedFile(_Model):
    name: str = Field(description="The normalized project name.")
    version: str
    file: str = Field(description="The wheel's file name.")
    sha256: str


class Lock(_Model):
    schema_version: int = LOCK_SCHEMA_VERSION
    module: str
    requires: list[str] = Field(description="What the spec declares, sorted.")
    target: Target
    installer: LockedFile = Field(description="The pip wheel that installs the packages.")
    packages: list[LockedFile]

    def text(self) -> str:
        """The canonical file content: its sha256 is the lock's hash."""
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"

    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()

    def files(self) -> list[LockedFile]:
        """Every file the install needs: the installer first."""
        return [self.installer, *self.packages]


def lock_path(module: str, spec_dir: Path) -> Path:
    """Where a module's lock lives: `<module name>.lock` beside its spec (or source) file."""
    return spec_dir / f"{module}.lock"


def normalize(name: str) -> str:
    """PEP 503: 'Foo_Bar.baz' -> 'foo-bar-baz'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_file(file: str, sha256: str) -> LockedFile:
    """A wheel's name and version from its file name (PEP 427)."""
    parts = file.removesuffix(".whl").split("-")
    return LockedFile(name=normalize(parts[0]), version=parts[1], file=file, sha256=sha256)


def declared(module: str, python: PythonPackages, spec_dir: Path) -> list[str]:
    """The requirement lines a spec declares: `packages` plus its requirements file's lines.

    Raises:
        PackageError: the requirements file cannot be read.
    """
    lines = [p.strip() for p in python.packages]
    if python.requirements is not None:
        path = spec_dir / python.requirements
        try:
            text = path.read_text()
        except OSError as exc:
            raise PackageError(
                module,
                f"environment.python.requirements: cannot read '{path}' "
                f"({exc.strerror or exc}); the path is relative to the spec file",
            ) from None
        for raw in text.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return sorted(set(lines))


def read_lock(path: Path, module: str) -> Lock | None:
    """The lock at `path`, or None when there is none.

    Raises:
        PackageError: the file is not a lock this containerexec reads.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise PackageError(
            module,
            f"cannot read the lock '{path}' ({exc}); remove it and run 'containerexec lock SPEC'",
            lock_path=str(path),
        ) from None
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PackageError(
            module,
            f"'{path}' is not a valid lock ({where}: {first['msg']}); "
            "run 'containerexec lock SPEC' to write it again",
            lock_path=str(path),
        ) from None


def write_lock(path: Path, lock: Lock) -> None:
    """Write the lock in its canonical form (replacing the file whole)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(lock.text())
    tmp.replace(path)


def requires_changes(lock: Lock, requires: list[str]) -> list[str]:
    """How the declared packages differ from what the lock was made for: '+ x', '- y'."""
    old, new = set(lock.requires), set(requires)
    return [f"+ {r}" for r in sorted(new - old)] + [f"- {r}" for r in sorted(old - new)]


def diff(old: Lock | None, new: Lock) -> list[str]:
    """What changed between two locks, one line each; empty when nothing did."""
    if old is None:
        return [f"+ {f.name} {f.version}" for f in new.packages]
    lines = []
    if old.target != new.target:
        lines.append(f"~ platform {old.target.describe()} -> {new.target.describe()}")
    was = {f.name: f for f in old.packages}
    now = {f.name: f for f in new.packages}
    for name in sorted(was.keys() | now.keys()):
        a, b = was.get(name), now.get(name)
        if a is None and b is not None:
            lines.append(f"+ {name} {b.version}")
        elif b is None and a is not None:
            lines.append(f"- {name} {a.version}")
        elif a is not None and b is not None and a != b:
            same = a.version == b.version
            lines.append(f"~ {name} {a.version} -> {b.version}" + (" (other file)" if same else ""))
    if old.installer.version != new.installer.version:
        lines.append(f"~ installer pip {old.installer.version} -> {new.installer.version}")
    return lines
