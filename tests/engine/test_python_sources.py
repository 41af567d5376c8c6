"""Issue 22, items 6 and 7 on the real engine: `run SOURCE.py:NAME` runs a module function
with no spec file, and a ContainerModule's array() is listed in its image when a spec-built
YAML runs, giving the shards Python gives. The refusals and records are unit tests:
tests/unit/test_python_sources.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import BASE_IMAGE
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.run.executor import RunOptions

SOURCE = f'''
from dataclasses import dataclass
from pathlib import Path

from containerexec.authoring import ContainerModule, InputDir, OutputDir, module


@module(image="{BASE_IMAGE}")
def double(n: int, out: OutputDir) -> int:
    (out / "n.txt").write_text(str(n * 2))
    return n * 2


@dataclass
class Config:
    corpus: InputDir
    out: OutputDir


class CountWords(ContainerModule):
    """One shard per file the corpus holds when the run starts."""

    image = "{BASE_IMAGE}"

    def array(self):
        return sorted(p.name for p in Path(self.config.corpus).iterdir())

    def run(self, iteration_value=None, iteration_index=0):
        words = len((self.config.corpus / iteration_value).read_text().split())
        (self.config.out / (iteration_value + ".n")).write_text(str(words))
        return {{"file": iteration_value, "words": words}}


count = CountWords(Config(corpus=Path("corpus"), out=Path("counts")))
'''


def test_run_source_py_name_runs_a_module_function_with_no_spec_file(
    workspace: Workspace,
) -> None:
    (workspace.root / "mods.py").write_text(SOURCE)
    ran = workspace.cli("run", "mods.py:double", "-i", "n=21", "-o", "out=out")
    assert ran.returncode == 0, ran.stderr
    assert (workspace.root / "out" / "n.txt").read_text() == "42"
    assert workspace.shards()[0].returned == 42
    assert not list(workspace.root.glob("*.yaml"))  # no spec build needed


def test_a_built_yaml_lists_array_in_the_image_when_it_runs_as_python_does(
    workspace: Workspace, test_session_label: dict[str, str]
) -> None:
    (workspace.root / "mods.py").write_text(SOURCE)
    corpus = workspace.folder("corpus", {"a.txt": "one two"})
    built = workspace.cli("spec", "build", "mods.py:count")
    assert built.returncode == 0, built.stderr
    # Files only the run sees: the YAML must not run the one file spec build saw.
    workspace.folder("corpus", {"b.txt": "three", "c.txt": "four five six"})

    count: Any = load_target(f"{workspace.root / 'mods.py'}:count")
    python = count.as_module().run(
        corpus=corpus,
        out=workspace.root / "out-py",
        runs_dir=workspace.root / "py-runs",
        options=RunOptions(labels=test_session_label),
    )
    ran = workspace.cli("run", "countwords.yaml", "-i", f"corpus={corpus}", "-o", "out=out-yaml")
    assert ran.returncode == 0, ran.stderr
    shards = workspace.shards()
    from_yaml = [shards[i].returned for i in sorted(shards)]
    words = [("a.txt", 2), ("b.txt", 1), ("c.txt", 3)]
    assert from_yaml == python.values == [{"file": f, "words": n} for f, n in words]
    names = ["a.txt.n", "b.txt.n", "c.txt.n"]
    assert sorted(p.name for p in Path(workspace.root / "out-yaml").iterdir()) == names
