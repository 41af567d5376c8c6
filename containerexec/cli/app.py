"""What every command shares: the runs folder, and the engine, made on first use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from containerexec.engine.factory import make_engine

if TYPE_CHECKING:
    from containerexec.engine.base import Engine
    from containerexec.store.tree import RunStore


@dataclass
class App:
    """Where runs are recorded and how to reach the engine.

    `engine_factory` makes the engine the first time a command needs one (so
    `validate` needs none); tests pass `App(..., engine_factory=FakeEngine)` as
    `obj` to drive a command with no Docker at all. Without one, the engine is
    `make_engine(engine_name)`: `--engine`, else CONTAINEREXEC_ENGINE, else the
    nearest containerexec.toml, else docker.
    """

    runs_dir: Path
    engine_factory: Callable[[], Engine] | None = field(default=None, repr=False)
    engine_name: str | None = None  # --engine; None: as engine/selection.py picks
    # Registry retry backoff; None = the library's own. Tests pass obj=App(..., sleep=...).
    sleep: Callable[[float], object] | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        """The engine, made and pinged on first use.

        Raises:
            EngineUnavailable: it does not answer.
        """
        if self._engine is None:
            engine = (self.engine_factory or (lambda: make_engine(self.engine_name)))()
            engine.ping()
            self._engine = engine
        return self._engine

    def use_recorded(self, name: str | None) -> None:
        """Use the engine a run recorded (a cluster worker's), unless one was named here."""
        if name and self.engine_factory is None and self.engine_name is None:
            self.engine_name = name

    @property
    def store(self) -> RunStore:
        from containerexec.store.tree import RunStore  # pydantic records: not for --help

        return RunStore(self.runs_dir)
