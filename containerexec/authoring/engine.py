"""The engine a Python-API run uses: the one given, or the local engine for the run's length.

`Module.run` and `Pipeline.run` are the Python API's edge, as the CLI is the
command line's: `engine=None` there means "connect to the local engine", and
this is the one place that does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

from containerexec.engine.base import Engine
from containerexec.engine.factory import make_engine


@contextmanager
def connected(engine: Engine | None) -> Iterator[Engine]:
    """Yield `engine`, or the default engine from the environment, closed afterwards.

    Raises:
        EngineUnavailable: `engine` is None and no local engine answers.
    """
    if engine is not None:
        yield engine
        return
    with closing(make_engine()) as local:  # closes its pooled connections afterwards
        yield local
