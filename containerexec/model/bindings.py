"""NAME=VALUE pairs from the command line -> checked, typed input values and output paths."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model.hostsafety import EnginePlaces, host_path_refusal
from containerexec.model.spec import InputPort, ModuleSpec, check_value


@dataclass(frozen=True)
class Bindings:
    """Input values (paths made absolute) and output target paths of one run."""

    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def parse_pairs(pairs: Iterable[str], flag: str) -> dict[str, str]:
    """['a=1', 'b=x=y'] -> {'a': '1', 'b': 'x=y'}."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} '{pair}': expected NAME=VALUE")
        if name in out:
            raise UsageError(f"{flag} '{name}' is given twice")
        out[name] = value
    return out


def bind(
    spec: ModuleSpec,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, str],
    *,
    base: Path | None = None,
    default_outputs: Path | None = None,
    engine_places: EnginePlaces | None = None,
) -> Bindings:
    """Check values against the spec's ports; paths become absolute, from `base`, and pass
    the host-safety rule (`engine_places`: the engine's data folder, which none may reach).

    Outputs not given go to `default_outputs / NAME` (inside the run's folder).
    """
    base = base or Path.cwd()
    where = f"module '{spec.name}'"
    for name in inputs:
        if name not in spec.inputs:
            known = ", ".join(sorted(spec.inputs)) or "none"
            raise UsageError(f"{where}: -i '{name}': no such input (inputs: {known})")
    for name in outputs:
        if name not in spec.outputs:
            known = ", ".join(sorted(spec.outputs)) or "none"
            raise UsageError(f"{where}: -o '{name}': no such output (outputs: {known})")
    bound: dict[str, Any] = {}
    for name, port in spec.inputs.items():
        value = bind_value(
            where, name, port, inputs.get(name, port.default), base, engine_places=engine_places
        )
        if value is not None:
            bound[name] = value
    targets: dict[str, str] = {}
    for name in spec.outputs:
        if name in outputs:
            targets[name] = str((base / os.path.expanduser(outputs[name])).resolve())
        elif default_outputs is not None:
            targets[name] = str(default_outputs / name)
        else:
            raise UsageError(f"{where}: output '{name}' needs a place; pass -o {name}=PATH")
    return Bindings(bound, targets)


def bind_value(
    where: str,
    name: str,
    port: InputPort,
    value: Any,
    root: Path,
    *,
    engine_places: EnginePlaces | None = None,
) -> Any:
    """One input value checked against its port, a path made absolute from `root`, and
    by the host-safety rule (model/hostsafety.py; `engine_places`: the engine's data folder).

    Returns None for an optional input left unset; raises UsageError naming `where`.
    """
    if value is None:
        if port.optional:
            return None
        raise UsageError(f"{where}: input '{name}' ({port.type}) is required; pass -i {name}=...")
    try:
        value = check_value(port.type, value)
    except ValueError as exc:
        raise UsageError(f"{where}: input '{name}': {exc}") from None
    if port.type in ("file", "directory"):
        path = (root / os.path.expanduser(str(value))).resolve()
        refused = host_path_refusal(path, engine_places=engine_places)
        if refused:
            raise UsageError(f"{where}: input '{name}': {refused}")
        if not (path.is_file() if port.type == "file" else path.is_dir()):
            raise UsageError(_missing(where, name, port.type, path))
        value = str(path)
    return value


def _missing(where: str, name: str, kind: str, path: Path) -> str:
    found = "a file" if path.is_file() else "a directory" if path.is_dir() else "nothing"
    return f"{where}: input '{name}' expects a {kind} at '{path}', found {found}; check the path"
