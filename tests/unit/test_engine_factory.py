"""engine/factory.py: engines are made by name, and only there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from containerexec.engine.factory import DEFAULT_ENGINE, engine_names, make_engine
from containerexec.errors import UsageError

PACKAGE = Path(__file__).resolve().parents[2] / "containerexec"


def test_the_default_engine_is_a_known_name() -> None:
    assert DEFAULT_ENGINE in engine_names()


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="no container engine 'nerd'; known: docker") as info:
        make_engine("nerd")
    assert info.value.exit_code == 2


def test_an_unknown_option_names_the_engines_options() -> None:
    with pytest.raises(UsageError, match="engine 'docker' takes no option 'tls'; known: pool_size"):
        make_engine("docker", tls=True)


def test_nothing_but_the_factory_constructs_an_engine() -> None:
    """`DockerEngine(...)` or `.from_env(` anywhere else would be a second way in."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "factory.py" or path.parts[-2:] == ("engine", "docker.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("DockerEngine", "from_env"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    template = PACKAGE / "authoring" / "templates" / "module" / "test_NAME.py.tmpl"
    assert "make_engine()" in template.read_text() and "from_env" not in template.read_text()
    assert found == []
