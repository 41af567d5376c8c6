"""Moved from tests/engine/test_images.py: a malformed image reference and a missing build
context are refused before anything starts, through the CLI on tests/fakes.FakeEngine.

Pulls, pushes, builds and pins, which the engine does, stay engine tests.
"""

from __future__ import annotations

from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from helpers import BASE_IMAGE


def test_a_malformed_reference_is_refused_before_anything_starts(
    workspace: FakeWorkspace,
) -> None:
    name = "badref"
    spec_path = workspace.root / "bad.yaml"
    spec_path.write_text(
        f"name: {name}\nenvironment: {{image: 'Not A//Ref::x'}}\ncommand: ['true']\n"
    )
    cases = {
        ("run", str(spec_path)): f"module '{name}': image 'Not A//Ref::x'",
        ("run", "Bad/Ref!"): "image 'Bad/Ref!'",
        ("inspect", "x:y:z"): "image 'x:y:z'",
        ("push", str(spec_path), "--to", "127.0.0.1:5000/ok:1"): f"module '{name}'",
    }
    for args, named in cases.items():
        result = workspace.cli(*args)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert named in result.stderr and "not a valid image reference" in result.stderr
    bad_to = workspace.root / "good.yaml"
    bad_to.write_text(f"name: {name}\nenvironment: {{image: '{BASE_IMAGE}'}}\ncommand: ['true']\n")
    for to in ("127.0.0.1:5000/Upper:1", f"127.0.0.1:5000/x@sha256:{'a' * 64}"):
        result = workspace.cli("push", str(bad_to), "--to", to)
        assert result.returncode == 1 and to in result.stderr, (result.stdout, result.stderr)
    assert workspace.engine.created == []


def test_a_missing_build_context_names_the_module_and_the_folder(
    workspace: FakeWorkspace,
) -> None:
    name = "noctx"
    spec_path = workspace.root / "noctx.yaml"
    spec_path.write_text(f"name: {name}\nenvironment: {{build: nowhere}}\ncommand: ['true']\n")
    for command in ("build", "run"):
        result = workspace.cli(command, str(spec_path))
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert f"module '{name}'" in result.stderr
        assert str(workspace.root / "nowhere") in result.stderr
        assert "build context does not exist" in result.stderr
    assert workspace.engine.created == []
