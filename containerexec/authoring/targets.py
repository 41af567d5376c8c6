"""`SOURCE.py:NAME` targets: import a user's file and take one object from it.

The module's code runs in its image, which has its declared packages; this host
need not. So while the file is read for `spec build`, `validate` and `run`, an
import this host cannot satisfy gets a stand-in (any attribute, any call), and the
caller is told which: importing the real file is what makes `@module`'s arguments,
the signature's annotations and a ContainerModule's methods exactly what Python
says they are, where parsing the file (ast) would have to guess at all three.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import traceback
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from containerexec.authoring.modules import ContainerModule, Module
from containerexec.errors import ContainerExecError, UsageError


class _Inert:
    """What a stood-in module's names are: callable, subscriptable, any attribute; a
    decorator from it leaves what it decorates as it was, a class from it is `object`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return self

    def __getattr__(self, name: str) -> _Inert:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> _Inert:
        return self

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: a module no real finder found that the file itself imports,
    and the submodules of those. An installed library's own optional imports still fail
    as it expects (its `except ImportError` must not receive a stand-in)."""

    def __init__(self, source: Path) -> None:
        self.source = str(source)
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.names or ("." not in fullname and self._importer() == self.source):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    @staticmethod
    def _importer() -> str | None:
        """The file of the `import` statement being run: the first frame past importlib."""
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # type: ignore[assignment]
        return frame.f_code.co_filename if frame is not None else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []
        if "." not in module.__name__:
            self.names.append(module.__name__)


@contextlib.contextmanager
def _standing_in(source: Path, names: list[str] | None) -> Iterator[None]:
    """Stand-ins for missing imports while the block runs (none when `names` is None);
    their names are added to `names`, and they leave sys.modules afterwards."""
    if names is None:
        yield
        return
    finder = _StandIns(source)
    sys.meta_path.append(finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in list(sys.modules):
            if isinstance(sys.modules[name], _StandIn):
                del sys.modules[name]
        names.extend(sorted(set(finder.names)))


def load_target(target: str, *, stand_ins: list[str] | None = None) -> Any:
    """'path/to/file.py:NAME' -> the object NAME defined there (the file is imported).

    With a `stand_ins` list, a module this host lacks is stood in for and its name
    added to the list, instead of failing the import (see the module docstring).
    """
    path_text, sep, name = target.rpartition(":")
    path = Path(path_text)
    if not sep or not name.isidentifier() or path.suffix != ".py":
        raise UsageError(f"'{target}': expected SOURCE.py:NAME, e.g. mymodule.py:count")
    if not path.is_file():
        raise UsageError(f"'{target}': no such file '{path}'")
    stem = path.stem if path.stem.isidentifier() else "containerexec_source"
    mod_name = stem if stem not in sys.modules else f"{stem}_{abs(hash(str(path.resolve())))}"
    loaded = importlib.util.spec_from_file_location(mod_name, path.resolve())
    assert loaded is not None and loaded.loader is not None
    mod = importlib.util.module_from_spec(loaded)
    sys.modules[mod_name] = mod  # dataclasses look their module up while it executes
    sys.path.insert(0, str(path.resolve().parent))  # so its sibling imports work here too
    try:
        with _standing_in(path.resolve(), stand_ins):
            loaded.loader.exec_module(mod)
    except ContainerExecError:
        raise
    except Exception as exc:  # the user's code: report it, with where it failed
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise UsageError(
            f"{path}: importing it failed at {Path(frame.filename).name}:"
            f"{frame.lineno}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not hasattr(mod, name):
        names = sorted(
            n
            for n, v in vars(mod).items()
            if isinstance(v, Module | ContainerModule)
            or callable(v)
            and getattr(v, "__module__", None) == mod_name
            and not n.startswith("_")
        )
        raise UsageError(
            f"'{target}': {path.name} defines no '{name}'; candidates: {', '.join(names) or 'none'}"
        )
    return getattr(mod, name)
