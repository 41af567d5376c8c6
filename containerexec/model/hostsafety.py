"""The one host-safety rule: whether a host path may be bound into a container, and where.

Every mount passes it: `run -i` bindings, `--resume`, a worker reading run.json, a
replay of someone else's record or bundle, and the runner just before a container is
created. A mount is refused when its source would hand the host to the container (the
engine's socket or any socket, a device, a FIFO, `/`, /proc, /sys, /dev, /run, the
engine's data folder or a folder holding it), when an input is writable, when an output
lies outside the run's own place, or when its target is not its port's place.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from containerexec.errors import UntrustedInput


class Mount(Protocol):
    """What the rule reads of a mount (model/invocation.py Mount). A protocol, not that
    class: invocation.py builds on this module, and nothing imports back, not even for an
    annotation."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def read_only(self) -> bool: ...


class Invocation(Protocol):
    """What the rule reads of an Invocation: its mounts."""

    @property
    def mounts(self) -> Sequence[Mount]: ...


INPUTS_ROOT = "/inputs"
OUTPUTS_ROOT = "/outputs"

# Mounted into a container, each of these hands it the host: its processes, kernel
# knobs, devices, and the sockets of its daemons (the engine's among them).
HOST_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"), Path("/run"))
# Mounts containerexec adds itself (run/returned.py, run/packing/batch.py): name -> (kind, target).
VALUE_MOUNT = ".returned"
VALUE_TARGET = f"{OUTPUTS_ROOT}/.containerexec-returned"
BATCH_ROOT = "/.containerexec-batch"
OWN_MOUNTS = {
    VALUE_MOUNT: ("output", VALUE_TARGET),
    ".batch-ctl": ("input", f"{BATCH_ROOT}/ctl"),
    ".batch-state": ("output", f"{BATCH_ROOT}/state"),
    ".batch-stage": ("output", f"{BATCH_ROOT}/stage"),
    ".batch-links": ("output", OUTPUTS_ROOT),
}


@dataclass(frozen=True)
class EnginePlaces:
    """What of this host belongs to the engine, as the engine says (Engine.places): its
    data folder and the sockets it listens on. None of them may be mounted."""

    data_root: Path | None = None
    sockets: tuple[str, ...] = ()


class UnsafeMount(UntrustedInput):
    """A mount the host-safety rule refuses; `where` names the record or run it came from."""

    def __init__(self, where: str, mount: Mount, reason: str) -> None:
        self.mount = mount
        self.reason = reason
        super().__init__(
            where,
            f"{mount.kind} mount '{mount.name}' ({mount.source} -> {mount.target}): {reason}; "
            "nothing was run. Replay with -i NAME=PATH of your own data, or ask the sender "
            "for an unedited record",
        )


def host_path_refusal(path: Path, *, engine_places: EnginePlaces | None = None) -> str | None:
    """Why the resolved host `path` must not be mounted, or None when it may be.

    Looks at the path and, when it exists here, at what it is (a socket, FIFO, device).
    """
    engine = engine_places or EnginePlaces()
    if _is_engine_socket(path, engine.sockets):
        return (
            f"'{path}' is the engine's socket, which would let the container control the "
            "engine; pass your data instead"
        )
    if path == Path("/") or any(path == r or r in path.parents for r in HOST_ROOTS):
        what = "the host's root folder" if path == Path("/") else f"in the host's /{path.parts[1]}"
        return f"'{path}' is {what}, which would hand the host to the container; pass your data"
    root = engine.data_root
    if root is not None and (path == root or _contains(path, root)):
        what = "is" if path == root or path in root.parents else "is inside"
        return (
            f"'{path}' {what} the engine's data folder {root} (its images, containers "
            "and volumes); pass your data"
        )
    try:
        special = special_kind(path.stat().st_mode)
    except OSError:
        special = None
    if special:
        return f"'{path}' is a {special}, which would hand the host to the container; pass data"
    return None


def real_path(path: str | Path) -> Path:
    """`path` absolute with its links followed, as the engine will follow them; where a
    link cannot be read (/proc/1/root to a non-owner), the path as written."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except OSError:
        return Path(os.path.abspath(path))


def _contains(path: Path, root: Path) -> bool:
    """Whether `path` is inside `root`, or holds it."""
    return root in path.parents or path in root.parents


def special_kind(mode: int) -> str | None:
    """'socket', 'FIFO' or 'device node' for a file mode that is one of those, else None."""
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    return None


def _is_engine_socket(path: Path, sockets: Sequence[str]) -> bool:
    for sock in sockets:
        if str(path) == sock:
            return True
        try:
            if os.path.samefile(path, sock):  # a hard link is the same socket
                return True
        except OSError:
            continue
    return False


def target_refusal(m: Mount) -> str | None:
    """Why the mount's container path is not its port's place, or None when it is."""
    target = m.target
    if posixpath.normpath(target) != target or not target.startswith("/"):
        return f"target '{target}' is not a plain absolute path"
    own = OWN_MOUNTS.get(m.name)
    if own is not None:
        kind, place = own
        if m.kind == kind and target == place:
            return None
        return f"containerexec's own mount '{m.name}' goes at {place} only"
    if m.kind == "input":
        place = f"{INPUTS_ROOT}/{m.name}"
        if target == place or target.startswith(place + "/"):
            return None
        return f"an input goes at {place}, not '{target}'"
    place = f"{OUTPUTS_ROOT}/{m.name}"
    return None if target == place else f"an output goes at {place}, not '{target}'"


def mount_refusal(
    m: Mount, *, engine_places: EnginePlaces | None, outputs_under: Sequence[Path] | None = None
) -> str | None:
    """Why mount `m` must not be made, or None when it may be: the one rule.

    `outputs_under`: the places this run's outputs may be (its staging); None skips
    that part of the rule (a caller that does not know them yet).
    """
    if m.kind == "input" and not m.read_only:
        return "an input is mounted read-only, and this one asks to be writable"
    if m.kind == "output" and m.read_only:
        return "an output must be writable"
    refused = target_refusal(m)
    if refused:
        return refused
    path = real_path(m.source)
    refused = host_path_refusal(path, engine_places=engine_places)
    if refused:
        return refused
    if m.kind == "output" and outputs_under is not None:
        roots = [real_path(r) for r in outputs_under]
        if not any(path == r or r in path.parents for r in roots):
            places = ", ".join(str(r) for r in roots)
            return f"an output goes in this run's own folder ({places}), not '{path}'"
    return None


def check_mount(
    m: Mount,
    *,
    where: str,
    engine_places: EnginePlaces | None,
    outputs_under: Sequence[Path] | None = None,
) -> None:
    """Raise UnsafeMount, naming `where` and the mount, when `mount_refusal` refuses it."""
    refused = mount_refusal(m, engine_places=engine_places, outputs_under=outputs_under)
    if refused:
        raise UnsafeMount(where, m, refused)


def invocation_refusal(
    inv: Invocation,
    *,
    engine_places: EnginePlaces | None,
    outputs_under: Sequence[Path] | None = None,
) -> str | None:
    """The first refused mount of `inv`, in one line, or None when every mount may be made."""
    for m in inv.mounts:
        refused = mount_refusal(m, engine_places=engine_places, outputs_under=outputs_under)
        if refused:
            return f"{m.kind} mount '{m.name}' ({m.source} -> {m.target}): {refused}"
    return None
