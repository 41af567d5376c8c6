"""The public surface is exactly __all__, and every name in it exists."""

from __future__ import annotations

import types

import containerexec


def test_every_name_in_all_is_exported() -> None:
    missing = [name for name in containerexec.__all__ if not hasattr(containerexec, name)]
    assert missing == []


def test_all_lists_every_public_name_and_nothing_twice() -> None:
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
