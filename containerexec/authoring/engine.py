"""The engine a Python-API run uses: the one given, or the local engine for the run's length.

`Module.run` and `Pipeline.run` are the Python API's edge, as the CLI is the
command line's: `engine=None` there means "connect to the local engine" (the one
CONTAINEREXEC_ENGINE or containerexec.toml names, else docker), `engine="podman"`
names one as `--engine` does, and this is the one place that connects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

from containerexec.engine.base import Engine
from containerexec.engine.factory import make_engine


@contextmanager
def connected(engine: Engine | str | None) -> Iterator[Engine]:
    """Yield `engine`, or the engine it names ("docker", "podman"), or the default
    engine from the environment; one made here is closed afterwards.

    Raises:
        UsageError: no engine has that name.
        EngineUnavailable: no engine answers.
    """
    if engine is not None and not isinstance(engine, str):
        yield engine
        return
    with closing(make_engine(engine)) as local:  # closes its pooled connections afterwards
        yield local
