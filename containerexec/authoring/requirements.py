"""What one shard of a ContainerModule needs: `requirements()` -> Requirements -> resources."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from containerexec.errors import UsageError


@dataclass(frozen=True)
class Requirements:
    """What one shard needs; `requirements()` returns this (or a dict of the same keys)."""

    cpus: float | None = None
    memory: str | int | None = None
    timeout: str | float | None = None
    shm_size: str | int | None = None
    max_parallel: int | None = None

    @classmethod
    def of(cls, value: Any, where: str) -> Requirements:
        """A Requirements, a dict of its fields, or stopes names (cpus_per_task, mem_gb,
        timeout_min)."""
        if value is None or isinstance(value, Requirements):
            return value or cls()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        data = dict(value)
        stopes: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "cpus_per_task": ("cpus", float),
            "mem_gb": ("memory", lambda g: f"{g}g"),
            "timeout_min": ("timeout", lambda m: float(m) * 60),
        }
        for old, (new, convert) in stopes.items():
            if data.get(old) is not None:
                data[new] = convert(data.pop(old))
        data = {k: v for k, v in data.items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"{where}: requirements() key '{unknown[0]}' is not supported; "
                f"known: {', '.join(sorted(known))}, cpus_per_task, mem_gb, "
                "timeout_min"
            )
        return cls(**data)
