"""A pipeline's -i values and -o places bound and checked before any job starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model.bindings import bind_value
from containerexec.model.pipeline import Plan


def bind_inputs(plan: Plan, given: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """-i values (paths from `base`) and defaults (paths from the pipeline file), checked."""
    where = f"pipeline '{plan.pipeline.name}'"
    ports = plan.pipeline.inputs
    for name in given:
        if name not in ports:
            raise UsageError(
                f"{where}: -i '{name}': no such input (inputs: "
                f"{', '.join(sorted(ports)) or 'none'})"
            )
    out: dict[str, Any] = {}
    for name, port in ports.items():
        value, root = (given[name], base) if name in given else (port.default, plan.spec_dir)
        value = bind_value(where, name, port, value, root)
        if value is not None:
            out[name] = value
    return out


def bind_outputs(
    plan: Plan, given: Mapping[str, str], base: Path, inputs: Mapping[str, Any]
) -> dict[str, str]:
    """-o places, absolute; refused when two overlap or one would overwrite an input."""
    where = f"pipeline '{plan.pipeline.name}'"
    out: dict[str, str] = {}
    for name, value in given.items():
        if name not in plan.outputs:
            raise UsageError(
                f"{where}: -o '{name}': no such output (outputs: "
                f"{', '.join(sorted(plan.outputs)) or 'none'})"
            )
        out[name] = str((base / os.path.expanduser(value)).resolve())
    items = sorted(out.items())
    for i, (a, pa) in enumerate(items):
        for b, pb in items[i + 1 :]:
            if _overlap(pa, pb):
                raise UsageError(
                    f"{where}: outputs '{a}' and '{b}' would be written to the same "
                    f"place ('{pa}', '{pb}'); give each its own -o path"
                )
        for in_name, value in inputs.items():
            if plan.pipeline.inputs[in_name].type in ("file", "directory") and _overlap(pa, value):
                raise UsageError(
                    f"{where}: output '{a}' at '{pa}' would overwrite input "
                    f"'{in_name}' ('{value}'); choose another -o path"
                )
    return out


def _overlap(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    return pa == pb or pa in pb.parents or pb in pa.parents
