"""The one place an engine is made, by name.

The CLI, the Python API, the generated module test and the Slurm worker all come
here, so Podman is one more entry in `_MAKERS` and nothing else changes above the
engine; a caller that names no engine gets the one engine/selection.py picks.
Importing this module loads no engine SDK: each maker imports its adapter when
called, which keeps `containerexec --help` fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from containerexec.errors import UsageError

if TYPE_CHECKING:
    from containerexec.engine.base import Engine

from containerexec.engine.selection import DEFAULT_ENGINE, Selected, selected_engine

__all__ = ["DEFAULT_ENGINE", "engine_names", "make_engine"]


@dataclass(frozen=True)
class _Maker:
    make: Callable[..., Engine]
    options: tuple[str, ...]  # the keyword options `make` takes


def _docker(**options: Any) -> Engine:
    from containerexec.engine.docker import DockerEngine

    return DockerEngine.from_env(**options)


def _podman(**options: Any) -> Engine:
    from containerexec.engine.podman import PodmanEngine

    return PodmanEngine.from_env(**options)


_MAKERS: dict[str, _Maker] = {
    "docker": _Maker(_docker, options=("pool_size",)),
    "podman": _Maker(_podman, options=("pool_size",)),
}


def engine_names() -> list[str]:
    """The names `make_engine` knows, sorted."""
    return sorted(_MAKERS)


def make_engine(name: str | None = None, **options: Any) -> Engine:
    """Connect to the engine called `name` ("docker", "podman"), configured from the
    environment; with no name, the one CONTAINEREXEC_ENGINE or containerexec.toml names.

    Options are the engine's own (both: `pool_size`, the pooled connections).
    The engine is not pinged: callers that need it to answer now call `ping()`.

    Raises:
        UsageError: no engine is called `name`, or it takes no such option.
        EngineUnavailable: the engine's client could not be set up.
    """
    chosen = Selected(name, "") if name is not None else selected_engine()
    name = chosen.name
    maker = _MAKERS.get(name)
    if maker is None:
        source = f" (from {chosen.source})" if chosen.source else ""
        raise UsageError(
            f"no container engine '{name}'{source}; known: {', '.join(engine_names())}"
        )
    unknown = sorted(set(options) - set(maker.options))
    if unknown:
        known = ", ".join(maker.options) or "none"
        raise UsageError(f"engine '{name}' takes no option '{unknown[0]}'; known: {known}")
    return maker.make(**options)
