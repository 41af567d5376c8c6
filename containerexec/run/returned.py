"""A shard's returned value: where the container writes it, and reading it back on the host.

A module whose environment sets CONTAINEREXEC_RETURN_FILE (the Python modules of
authoring/ do) gets one more writable mount, `<staging>/.returned` at
/outputs/.containerexec-returned. Its in-container entry writes the value there
as JSON; the Run reads it after a succeeded attempt, removes it before the outputs
are committed (so it never reaches them), and keeps it in the shard record with
container paths turned into the host paths they were committed to.

A file rather than a marker line in the log: the log is cut to its last bytes
past its limit, has secrets masked and carries whatever the program prints, while
a file in the staging folder is kept whole and travels with the outputs into the
shard cache, so a cached shard returns its value too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from containerexec.model import hostsafety
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, Mount, container_paths
from containerexec.model.spec import ModuleSpec

ENV_FILE = "CONTAINEREXEC_RETURN_FILE"
MOUNT_NAME = hostsafety.VALUE_MOUNT
CONTAINER_DIR = hostsafety.VALUE_TARGET
CONTAINER_FILE = f"{CONTAINER_DIR}/value.json"
MAX_BYTES = 1 << 20  # a value, not a data set: bigger ones belong in an output


class ValueUnreadable(Exception):
    """The value file is there but is not JSON of a sane size."""


def wanted(inv: Invocation) -> bool:
    return inv.env.get(ENV_FILE) == CONTAINER_FILE


def mounted(inv: Invocation, staging: Path) -> Invocation:
    """`inv` with the value folder mounted, when its module returns a value."""
    if not wanted(inv) or any(m.name == MOUNT_NAME for m in inv.mounts):
        return inv
    mount = Mount(
        kind="output",
        name=MOUNT_NAME,
        source=str(staging / MOUNT_NAME),
        target=CONTAINER_DIR,
        read_only=False,
    )
    return inv.model_copy(update={"mounts": [*inv.mounts, mount]})


def is_value_mount(m: Mount) -> bool:
    """True for the value folder: an output mount that is no output port."""
    return m.name == MOUNT_NAME


def prepare(staging: Path, inv: Invocation) -> None:
    """Create the (empty) value folder the mount needs, after staging.prepare."""
    if wanted(inv):
        (staging / MOUNT_NAME).mkdir(parents=True, exist_ok=True)


def take(staging: Path, inv: Invocation, spec: ModuleSpec, bindings: Bindings) -> Any:
    """Read and remove the value the shard wrote, with host paths; None when it wrote none.

    Raises:
        ValueUnreadable: the file is larger than MAX_BYTES or not JSON.
    """
    return host_paths(read(staging, inv), port_places(spec, bindings))


def read(staging: Path, inv: Invocation) -> Any:
    """Read and remove the value the container wrote, as written; None when it wrote none.

    Raises:
        ValueUnreadable: the file is larger than MAX_BYTES or not JSON.
    """
    folder = staging / MOUNT_NAME
    path = folder / "value.json"
    if not wanted(inv) or not (path.is_file() or path.is_symlink()):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    try:
        if path.is_symlink() or not path.is_file():  # never read a host file through a link
            raise ValueUnreadable(f"{CONTAINER_FILE} is a link or not a plain file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueUnreadable(
                f"the returned value is {size} bytes (more than {MAX_BYTES}); write it "
                "to an output and return its path"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueUnreadable(f"{CONTAINER_FILE} is not JSON: {exc}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return data


def port_places(spec: ModuleSpec, bindings: Bindings) -> list[tuple[str, str]]:
    """(container path, host path) of every mounted port, longest container path first."""
    places = []
    for key, inside in container_paths(spec, bindings).items():
        kind, _, name = key.partition(".")
        if kind == "outputs":
            places.append((inside, str(Path(bindings.outputs[name]).absolute())))
        elif spec.inputs[name].type in ("file", "directory"):
            places.append((inside, str(Path(bindings.inputs[name]).absolute())))
    return sorted(places, key=lambda p: len(p[0]), reverse=True)


def host_paths(value: Any, places: list[tuple[str, str]]) -> Any:
    """`value` with every string that is a container path of a port turned into its host path."""
    if isinstance(value, str):
        for inside, host in places:
            if value == inside or value.startswith(inside.rstrip("/") + "/"):
                return host + value[len(inside) :]
        return value
    if isinstance(value, list):
        return [host_paths(v, places) for v in value]
    if isinstance(value, dict):
        return {k: host_paths(v, places) for k, v in value.items()}
    return value
