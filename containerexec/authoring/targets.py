"""`SOURCE.py:NAME` targets: import a user's file and take one object from it."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from containerexec.authoring.modules import ContainerModule, Module
from containerexec.errors import ContainerExecError, UsageError


def load_target(target: str) -> Any:
    """'path/to/file.py:NAME' -> the object NAME defined there (the file is imported)."""
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
