"""The public surface is exactly __all__, and every name in it exists."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import containerexec


def test_every_name_in_all_is_exported() -> None:
    missing = [name for name in containerexec.__all__ if not hasattr(containerexec, name)]
    assert missing == []


def test_all_lists_every_public_name_and_nothing_twice() -> None:
    for name in containerexec.__all__:  # each is imported on first use
        getattr(containerexec, name)
    public = {
        name
        for name, value in vars(containerexec).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert public == set(containerexec.__all__)
    assert len(containerexec.__all__) == len(set(containerexec.__all__))


def test_errors_carry_their_exit_status() -> None:
    assert containerexec.SpecError.exit_code == 2
    assert containerexec.UsageError.exit_code == 2
    assert containerexec.EngineError.exit_code == 1


def test_importing_the_package_loads_no_engine_sdk_nor_run_core() -> None:
    """The names are imported on first use, so `import containerexec` stays light."""
    code = (
        "import sys, containerexec; "
        "print(sorted(m for m in sys.modules if m == 'docker' or m.startswith("
        "('containerexec.run', 'containerexec.authoring', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        containerexec.Nope  # noqa: B018
