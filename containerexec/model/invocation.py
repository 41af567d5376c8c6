"""Invocation: everything one container needs, as pure JSON-able data; and resolve()."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from containerexec.labels import LABEL_MODULE, LABEL_RUN, LABEL_SHARD
from containerexec.model import placeholders
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.hostsafety import (
    INPUTS_ROOT as INPUTS_ROOT,  # re-exported: imported from here
)
from containerexec.model.hostsafety import OUTPUTS_ROOT as OUTPUTS_ROOT
from containerexec.model.names import ContainerName, ModuleName, MountName, RunId, ShardFile
from containerexec.model.spec import DEFAULT_PIDS, ModuleSpec

# What may follow `${{inputs.X}}/${{shard.value}}` when the text names the shard's file alone
# (a '.', '_', '*', '/' ... could name a sibling or a pattern of the folder).
PATH_ENDS = frozenset(" \t\n\"',;:|&<>)")


class Mount(BaseModel):
    """A host path bound into the container, under its logical port name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["input", "output"]
    name: MountName
    source: str
    target: str
    read_only: bool
    is_file: bool = False
    shard_file: ShardFile = Field(
        "",
        description="Set when only this file of input `name` is mounted (a glob shard's own "
        "file): its path inside the input. Empty when the whole input is mounted.",
    )


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = None
    memory_bytes: int | None = None
    shm_size_bytes: int | None = None
    timeout_s: float | None = None
    # Records written before this field replay with the default, not without a limit.
    pids: int = DEFAULT_PIDS


class Invocation(BaseModel):
    """One container run, self-sufficient: replaying it needs nothing but this and the image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: RunId
    module: ModuleName
    shard_index: int = 0
    shard_count: int = 1
    shard_value: str = ""
    image: str = Field(description="Pinned reference: repo@sha256:... or an image ID.")
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    secret_names: list[str] = Field(
        default_factory=list, description="Taken from the caller's environment; never stored."
    )
    mounts: list[Mount] = Field(default_factory=list)
    workdir: str | None = None
    user: str
    limits: Limits = Field(default_factory=Limits)
    network: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    name: ContainerName

    def short(self) -> str:
        """A stable one-line description for log lines."""
        shard = f" shard {self.shard_index}/{self.shard_count}" if self.shard_count > 1 else ""
        return f"{self.module}{shard} [{self.image[:40]}] {shlex.join(self.argv)[:120]}"


@dataclass(frozen=True)
class GlobMount:
    """How each shard of a glob array mounts the globbed folder: its own file, or all of it."""

    input: str
    file_only: bool
    why: str  # what decided it, for `containerexec validate`

    def describe(self) -> str:
        """One line saying what each shard mounts and what its cache key covers."""
        where = f"{INPUTS_ROOT}/{self.input}"
        if self.file_only:
            return (
                f"each shard mounts only its own file of input '{self.input}' (read-only, "
                f"at {where}/<shard value>) and is keyed on it: a new file reruns one shard"
            )
        return (
            f"each shard mounts all of input '{self.input}' at {where} and is keyed on every "
            f"file of it ({self.why}; only '${{{{inputs.{self.input}}}}}/${{{{shard.value}}}}' "
            "mounts the shard's file alone)"
        )


def glob_mount(spec: ModuleSpec) -> GlobMount | None:
    """The rule for a glob array's folder input; None when the module globs nothing.

    A shard mounts only its own file, at the path the whole folder would give it, when
    every use of the input in `command` and `env` is `${{inputs.X}}/${{shard.value}}`
    ending the string or followed by one of PATH_ENDS, there is at least one such use,
    and the container path `/inputs/X` is written nowhere else. Anything else might read
    other files of the folder, so the shard mounts the whole folder.
    """
    if spec.array is None or spec.array.glob is None:
        return None
    name = spec.array.glob.input
    me, value = placeholders.Ref("inputs", name), placeholders.Ref("shard", "value")
    texts = [t for item in spec.command for t in ([item] if isinstance(item, str) else item)]
    texts += list(spec.env.values())
    exact = 0
    for text in texts:
        found = placeholders.find(text)
        rest, last = [], 0
        for i, p in enumerate(found):
            rest.append(text[last : p.start])
            last = p.end
            if p.ref != me:
                continue
            nxt = found[i + 1] if i + 1 < len(found) else None
            if (
                nxt is None
                or nxt.ref != value
                or text[p.end : nxt.start] != "/"
                or (nxt.end < len(text) and text[nxt.end] not in PATH_ENDS)
            ):
                return GlobMount(name, False, f"it is used in '{text}'")
            exact += 1
        rest.append(text[last:])
        if f"{INPUTS_ROOT}/{name}" in "".join(rest):
            return GlobMount(name, False, f"'{INPUTS_ROOT}/{name}' is written in '{text}'")
    if not exact:
        return GlobMount(name, False, f"the command never names '${{{{inputs.{name}}}}}'")
    return GlobMount(name, True, "")


def container_paths(spec: ModuleSpec, bindings: Bindings) -> dict[str, str]:
    """Placeholder values for inputs and outputs, as paths seen inside the container."""
    values: dict[str, str] = {}
    for name, value in bindings.inputs.items():
        kind = spec.inputs[name].type
        if kind == "directory":
            values[f"inputs.{name}"] = f"{INPUTS_ROOT}/{name}"
        elif kind == "file":
            values[f"inputs.{name}"] = f"{INPUTS_ROOT}/{name}/{Path(value).name}"
        else:
            values[f"inputs.{name}"] = placeholders.as_text(value)
    for name, port in spec.outputs.items():
        if port.type == "directory":
            values[f"outputs.{name}"] = f"{OUTPUTS_ROOT}/{name}"
        else:
            values[f"outputs.{name}"] = (
                f"{OUTPUTS_ROOT}/{name}/{output_filename(spec, bindings, name)}"
            )
    return values


def output_filename(spec: ModuleSpec, bindings: Bindings, name: str) -> str:
    """The file name a file output is written under inside its staging folder."""
    return spec.outputs[name].path or Path(bindings.outputs[name]).name


def resolve(
    spec: ModuleSpec,
    bindings: Bindings,
    shard: Shard,
    *,
    run_id: str,
    image: str,
    staging: Path,
    user: str,
    labels: dict[str, str] | None = None,
) -> Invocation:
    """Build the Invocation of one shard. Pure: no Docker, no clock, no filesystem."""
    values = container_paths(spec, bindings)
    if spec.array is not None:
        values |= {
            "shard.index": str(shard.index),
            "shard.value": shard.value,
            "shard.count": str(shard.count),
        }
    argv = placeholders.render_argv(spec.command, values)
    env = {k: placeholders.render(v, values) for k, v in spec.env.items()}
    # HOME on the read-only root would break tools that write caches there.
    env.setdefault("HOME", "/tmp")
    env |= {
        "CONTAINEREXEC_SHARD_INDEX": str(shard.index),
        "CONTAINEREXEC_SHARD_VALUE": shard.value,
        "CONTAINEREXEC_SHARD_COUNT": str(shard.count),
    }
    mounts = []
    narrow = glob_mount(spec)
    for name, value in sorted(bindings.inputs.items()):
        kind = spec.inputs[name].type
        if narrow is not None and narrow.file_only and name == narrow.input:
            # The shard's file alone, where the folder would put it: the same argv, an exact key.
            mounts.append(
                Mount(
                    kind="input",
                    name=name,
                    source=str(Path(value) / shard.value),
                    target=posixpath.join(values[f"inputs.{name}"], shard.value),
                    read_only=True,
                    is_file=True,
                    shard_file=shard.value,
                )
            )
        elif kind in ("file", "directory"):
            target = values[f"inputs.{name}"]
            mounts.append(
                Mount(
                    kind="input",
                    name=name,
                    source=value,
                    target=target,
                    read_only=True,
                    is_file=kind == "file",
                )
            )
    for name in sorted(spec.outputs):
        mounts.append(
            Mount(
                kind="output",
                name=name,
                source=str(staging / name),
                target=posixpath.join(OUTPUTS_ROOT, name),
                read_only=False,
            )
        )
    res = spec.resources
    all_labels = {
        **(labels or {}),
        LABEL_RUN: run_id,
        LABEL_MODULE: spec.name,
        LABEL_SHARD: str(shard.index),
    }
    return Invocation(
        run_id=run_id,
        module=spec.name,
        shard_index=shard.index,
        shard_count=shard.count,
        shard_value=shard.value,
        image=image,
        argv=argv,
        env=env,
        secret_names=sorted(spec.secrets),
        mounts=mounts,
        workdir=spec.workdir,
        user=user,
        limits=Limits(
            cpus=res.cpus,
            memory_bytes=res.memory,
            shm_size_bytes=res.shm_size,
            timeout_s=res.timeout,
            pids=res.pids,
        ),
        network=spec.network,
        labels=all_labels,
        name=f"cx-{run_id}-{shard.index}",
    )
