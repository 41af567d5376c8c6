"""Moved from tests/engine/test_images.py: a malformed image reference, a missing build
context and an image label holding a broken spec are refused before anything starts,
through the CLI (or the library) on tests/fakes.FakeEngine.

Pulls, pushes, builds and pins, which the engine does, stay engine tests.
"""

from __future__ import annotations

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import FakeEngine
from helpers import BASE_IMAGE

from containerexec.engine.base import ImageInfo
from containerexec.environment import sharing
from containerexec.errors import SpecError
from containerexec.labels import LABEL_SPEC

BASE = "containerexec/base:bookworm"


class Labelled(FakeEngine):
    """Every image here carries `labels`, as an image built with them would."""

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__()
        self.labels = labels

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(id="sha256:" + "f" * 64, tags=[ref], labels=dict(self.labels))


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


def test_an_image_with_a_broken_spec_label_names_the_image(workspace: FakeWorkspace) -> None:
    tag = "containerexec/broken-0a1b2c3d:1"
    engine = Labelled({LABEL_SPEC: "name: x\ncommand: 3\n"})
    with pytest.raises(SpecError) as caught:
        sharing.spec_from_image(engine, tag)
    assert tag in str(caught.value) and "environment" in str(caught.value)
    plain = workspace.cli("inspect", BASE)  # the fake's images carry no label
    assert plain.returncode == 1 and "carries no module spec" in plain.stderr
