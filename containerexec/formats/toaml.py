"""Our ModuleSpec -> an Azure ML v2 command component (plain data, for YAML).

The argv becomes a shell command: literal parts quoted with shlex, each
placeholder in double quotes, an optional group as `$[[ ... ]]`. Azure ML pastes
values into that text, as it does for any component. What a component cannot say
(limits, retries, secrets, network, arrays) is returned as notes, never dropped
silently; an array module is refused, since one command component is one process.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model import placeholders
from containerexec.model.invocation import INPUTS_ROOT
from containerexec.model.spec import ModuleSpec

SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json"
_TYPES = {
    "directory": "uri_folder",
    "file": "uri_file",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}


def to_component(
    spec: ModuleSpec, spec_dir: Path, out_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    """The component data and the notes on what it cannot carry.

    Paths (code, build context) are written relative to `out_dir`, where the
    component file goes; relative paths in `spec` are from `spec_dir`.
    """
    if spec.array is not None:
        raise UsageError(
            f"module '{spec.name}' is an array; an Azure ML command component runs one "
            "process, so it cannot carry 'array:' (remove it, or run the array here)"
        )
    notes: list[str] = []
    code = _code_input(spec)
    data: dict[str, Any] = {
        "$schema": SCHEMA,
        "type": "command",
        "name": re.sub(r"[^a-z0-9_]", "_", spec.name).lstrip("_0123456789") or "module",
        "version": spec.version,
    }
    if spec.description:
        data["description"] = spec.description
    if not spec.cache:
        data["is_deterministic"] = False
    inputs: dict[str, Any] = {}
    for name, port in spec.inputs.items():
        if name == code:
            continue
        entry: dict[str, Any] = {"type": _TYPES[port.type]}
        if port.optional:
            entry["optional"] = True
        if port.default is not None:
            if port.type in ("file", "directory"):
                notes.append(f"inputs.{name}.default: a path default has no place in Azure ML")
            else:
                entry["default"] = port.default
        if port.description:
            entry["description"] = port.description
        inputs[name] = entry
    outputs: dict[str, Any] = {}
    for name, out in spec.outputs.items():
        outputs[name] = {"type": _TYPES[out.type]}
        if out.description:
            outputs[name]["description"] = out.description
        if out.path:
            notes.append(f"outputs.{name}.path: Azure ML names a file output itself")
    data |= {"inputs": inputs, "outputs": outputs}
    if code is not None:
        default = spec.inputs[code].default
        data["code"] = _relative(spec_dir / str(default), out_dir)
    env = spec.environment
    if env.build is not None:
        build = {"path": _relative(spec_dir / env.build.context, out_dir)}
        if env.build.dockerfile != "Dockerfile":
            build["dockerfile_path"] = env.build.dockerfile
        data["environment"] = {"build": build}
        if env.build.target or env.build.args:
            notes.append("environment.build.target/args: not in Azure ML")
    else:
        data["environment"] = {"image": env.image}
    data["command"] = _command(spec, code)
    if spec.resources.shm_size:
        data["resources"] = {"shm_size": f"{spec.resources.shm_size // 1024**2}m"}
    res = spec.resources
    lost = [
        ("resources.cpus", res.cpus),
        ("resources.memory", res.memory),
        ("resources.timeout", res.timeout),
        ("retries", spec.retries.max_attempts > 1),
        ("secrets", spec.secrets),
        ("network", spec.network),
    ]
    notes += [f"{what}: no Azure ML command component field" for what, value in lost if value]
    return data, notes


def _code_input(spec: ModuleSpec) -> str | None:
    """The input that is the working directory (an Azure ML `code:` folder), if any."""
    prefix = f"{INPUTS_ROOT}/"
    if spec.workdir is None or not spec.workdir.startswith(prefix):
        return None
    name = spec.workdir.removeprefix(prefix)
    port = spec.inputs.get(name)
    if port is None or port.type != "directory" or port.default is None:
        return None
    return name


def _command(spec: ModuleSpec, code: str | None) -> str:
    line: list[str] = []
    for item in spec.command:
        if isinstance(item, str):
            line.append(_word(item))
        else:
            line.append("$[[" + " ".join(_word(part) for part in item) + "]]")
    prefix = [f"export {k}={_word(v)};" for k, v in sorted(spec.env.items())]
    if spec.workdir is not None and code is None:
        prefix.append(f"cd {shlex.quote(spec.workdir)} &&")
    return " ".join([*prefix, *line])


def _word(text: str) -> str:
    """One argv element as shell text: literals quoted, placeholders in double quotes."""
    parts: list[str] = []
    at = 0
    for p in placeholders.find(text):
        if text[at : p.start]:
            parts.append(shlex.quote(text[at : p.start]))
        parts.append(f'"{text[p.start : p.end]}"')
        at = p.end
    if text[at:] or not parts:
        parts.append(shlex.quote(text[at:]))
    return "".join(parts)


def _relative(path: Path, out_dir: Path) -> str:
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return rel if rel.startswith(".") else f"./{rel}"
