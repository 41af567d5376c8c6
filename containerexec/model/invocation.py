"""Invocation: everything one container needs, as pure JSON-able data; and resolve()."""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from containerexec.labels import LABEL_MODULE, LABEL_RUN, LABEL_SHARD
from containerexec.model import placeholders
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.spec import DEFAULT_PIDS, ModuleSpec

INPUTS_ROOT = "/inputs"
OUTPUTS_ROOT = "/outputs"


class Mount(BaseModel):
    """A host path bound into the container, under its logical port name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["input", "output"]
    name: str
    source: str
    target: str
    read_only: bool
    is_file: bool = False


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

    run_id: str
    module: str
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
    name: str

    def short(self) -> str:
        """A stable one-line description for log lines."""
        shard = f" shard {self.shard_index}/{self.shard_count}" if self.shard_count > 1 else ""
        return f"{self.module}{shard} [{self.image[:40]}] {shlex.join(self.argv)[:120]}"


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
    for name, value in sorted(bindings.inputs.items()):
        kind = spec.inputs[name].type
        if kind in ("file", "directory"):
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
