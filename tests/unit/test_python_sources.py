"""Issue 22, items 6-8, without an engine: a YAML from `spec build` records its source's
sha256 and is refused once the source changed; a resume says when it runs a changed
source; `validate`/`run SOURCE.py:NAME`; a ContainerModule's array() is never frozen
(the run lists it, played here by tests/fakes.FakeEngine); and a module file whose
packages this host lacks still spec-builds and validates."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome
from helpers import BASE_IMAGE

from containerexec.model.invocation import Invocation
from containerexec.run import returned

NORMALISE = f'''
from containerexec.authoring import InputDir, OutputDir, ShardValue, module


@module(image="{BASE_IMAGE}", array={{"values": ["a", "b"]}})
def normalise(corpus: InputDir, out: OutputDir, value: ShardValue) -> None:
    """Lower-case one file."""
    (out / value).write_text((corpus / value).read_text().lower())
'''

COUNTING = f'''
from dataclasses import dataclass
from pathlib import Path

from containerexec.authoring import ContainerModule, InputDir, OutputDir


@dataclass
class Config:
    corpus: InputDir = Path("nowhere-on-this-host")
    out: OutputDir = Path("counts")


class CountFiles(ContainerModule):
    image = "{BASE_IMAGE}"

    def array(self):
        return sorted(p.name for p in Path(self.config.corpus).iterdir())

    def run(self, iteration_value=None, iteration_index=0):
        return iteration_value


count = CountFiles(Config())
'''


def test_an_edited_source_makes_validate_and_run_of_its_yaml_refuse_until_built_again(
    workspace: FakeWorkspace,
) -> None:
    source = workspace.root / "normalise.py"
    source.write_text(NORMALISE)
    built = workspace.cli("spec", "build", "normalise.py:normalise")
    assert built.returncode == 0, built.stderr
    assert workspace.cli("validate", "normalise.yaml").returncode == 0

    source.write_text(NORMALISE.replace(".lower()", ".upper()"))
    said = (
        "normalise.py changed since spec build; "
        "run `containerexec spec build normalise.py:normalise`"
    )
    refused = workspace.cli("validate", "normalise.yaml")
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    ran = workspace.cli("run", "normalise.yaml", "-i", f"corpus={workspace.folder('c')}")
    assert ran.returncode == 2 and said in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and workspace.engine.created == []

    # A YAML written elsewhere: the command that rebuilds it names it.
    assert workspace.cli("spec", "build", "normalise.py:normalise", "-o", "specs/n.yaml")
    source.write_text(NORMALISE)
    moved = workspace.cli("validate", "specs/n.yaml")
    assert moved.returncode == 2, moved.stderr
    assert "run `containerexec spec build normalise.py:normalise -o specs/n.yaml`" in moved.stderr

    assert workspace.cli("spec", "build", "normalise.py:normalise").returncode == 0
    assert workspace.cli("validate", "normalise.yaml").returncode == 0


def test_a_hand_written_yaml_and_one_that_travelled_without_its_source_are_unaffected(
    workspace: FakeWorkspace,
) -> None:
    (workspace.root / "normalise.py").write_text(NORMALISE)
    assert workspace.cli("spec", "build", "normalise.py:normalise").returncode == 0
    elsewhere = workspace.folder("elsewhere")
    shutil.copy(workspace.root / "normalise.yaml", elsewhere)
    alone = workspace.cli("validate", "elsewhere/normalise.yaml")
    assert alone.returncode == 0, alone.stderr  # it carries its code: nothing to compare
    hand = workspace.spec(f"name: hand\nenvironment: {{image: {BASE_IMAGE}}}\ncommand: [echo]\n")
    assert workspace.cli("validate", str(hand)).returncode == 0


def test_validate_and_run_take_a_python_module_directly(workspace: FakeWorkspace) -> None:
    (workspace.root / "normalise.py").write_text(NORMALISE)
    checked = workspace.cli("validate", "normalise.py:normalise")
    assert checked.returncode == 0, checked.stderr
    assert "valid module 'normalise'" in checked.stdout
    corpus = workspace.folder("corpus", {"a": "A", "b": "B"})
    workspace.engine.script = lambda inv, n: Outcome(files={})
    ran = workspace.cli("run", "normalise.py:normalise", "-i", f"corpus={corpus}", "-o", "out=o")
    assert ran.returncode == 0, ran.stderr
    record = workspace.record()
    assert record.shard_count == 2 and record.spec_path == str(workspace.root / "normalise.py")
    assert (record.spec["source"] or {})["object"] == "normalise"


def test_a_resume_that_runs_a_changed_source_says_so_and_records_it(
    workspace: FakeWorkspace,
) -> None:
    source = workspace.root / "normalise.py"
    source.write_text(NORMALISE)
    corpus = workspace.folder("corpus", {"a": "A", "b": "B"})
    workspace.engine.script = lambda inv, n: Outcome(exit_code=3 if n == 1 else 0, files={})
    assert workspace.cli("spec", "build", "normalise.py:normalise").returncode == 0
    args = ("-i", f"corpus={corpus}", "-o", "out=o")
    first = workspace.cli("run", "normalise.yaml", *args, "--max-parallel", "1")
    assert first.returncode == 1, first.stderr
    run_id = workspace.run_id()

    source.write_text(NORMALISE.replace(".lower()", ".upper()"))
    assert workspace.cli("spec", "build", "normalise.py:normalise").returncode == 0
    again = workspace.cli("run", "normalise.yaml", "--resume", run_id)
    assert again.returncode == 0, again.stderr
    said = [line for line in again.stderr.splitlines() if "Python source" in line]
    assert len(said) == 1 and "changed since run" in said[0], again.stderr
    assert "the shards this resume runs run the new source" in said[0]
    assert "containerexec run normalise.yaml (without --resume)" in said[0]
    assert workspace.record(run_id).notes == [said[0].strip()]


def lists(values: list[str]) -> object:
    """The fake engine playing CountFiles: its listing container returns `values`; each
    shard succeeds."""

    def script(inv: Invocation, n: int) -> Outcome:
        if "CONTAINEREXEC_PY_ARRAY" in inv.env:
            return Outcome(files={f"{returned.MOUNT_NAME}/value.json": json.dumps(values).encode()})
        return Outcome(files={})

    return script


def test_spec_build_never_freezes_array_and_a_run_lists_it_when_it_starts(
    workspace: FakeWorkspace,
) -> None:
    (workspace.root / "counting.py").write_text(COUNTING)
    # array() would fail here (its corpus is on no host yet): spec build never calls it.
    built = workspace.cli("spec", "build", "counting.py:count")
    assert built.returncode == 0, built.stderr
    text = (workspace.root / "countfiles.yaml").read_text()
    assert yaml.safe_load(text)["array"] == {"python": "array"}
    header = text.split("\n", 1)[0]
    assert header.startswith("# Generated from counting.py:CountFiles")
    assert header.endswith("regenerate: containerexec spec build counting.py:count")
    checked = workspace.cli("validate", "countfiles.yaml")
    assert "array() lists the shards in the image when a run starts" in checked.stdout

    corpus = workspace.folder("corpus", {"a.txt": "a"})
    workspace.engine.script = lists(["a.txt", "b.txt", "c.txt"])  # type: ignore[assignment]
    ran = workspace.cli("run", "countfiles.yaml", "-i", f"corpus={corpus}", "-o", "out=o")
    assert ran.returncode == 0, ran.stderr
    listing, *shards = workspace.engine.created
    assert [m.kind for m in listing.mounts] == ["input", "output"]  # the value folder only
    assert listing.mounts[1].name == returned.MOUNT_NAME
    assert sorted(s.env["CONTAINEREXEC_SHARD_VALUE"] for s in shards) == [
        '"a.txt"',
        '"b.txt"',
        '"c.txt"',
    ]
    record = workspace.record()
    assert record.spec["array"]["values"] == ['"a.txt"', '"b.txt"', '"c.txt"']

    # A resume keeps the run's list: no listing again.
    before = len(workspace.engine.created)
    again = workspace.cli("run", "countfiles.yaml", "--resume", record.run_id)
    assert again.returncode == 0, again.stderr
    assert len(workspace.engine.created) == before


def test_a_listing_that_fails_or_lists_nothing_runs_nothing_and_says_why(
    workspace: FakeWorkspace,
) -> None:
    (workspace.root / "counting.py").write_text(COUNTING)
    assert workspace.cli("spec", "build", "counting.py:count").returncode == 0
    corpus = workspace.folder("corpus")
    args = ("run", "countfiles.yaml", "-i", f"corpus={corpus}")
    workspace.engine.script = lambda inv, n: Outcome(exit_code=1, files={})
    failed = workspace.cli(*args)
    assert failed.returncode == 1, failed.stderr
    assert "array.python: array() in its image failed" in failed.stderr
    assert "nothing was run" in failed.stderr and "array-list.log" in failed.stderr
    workspace.engine.script = lists([])  # type: ignore[assignment]
    empty = workspace.cli(*args)
    assert empty.returncode == 2 and "returned an empty list" in empty.stderr, empty.stderr
    assert "Traceback" not in failed.stderr + empty.stderr
    assert len(workspace.engine.created) == 2  # the two listings, no shard


def test_a_module_importing_packages_this_host_lacks_spec_builds_and_validates(
    workspace: FakeWorkspace,
) -> None:
    assert importlib.util.find_spec("regex") is None  # else this test shows nothing
    (workspace.root / "clean.py").write_text(
        textwrap.dedent(f'''
        import regex
        from regex import sub as substitute

        from containerexec.authoring import InputFile, OutputFile, module

        WORD = regex.compile(r"\\p{{L}}+")


        @regex.cache_all
        def helper():
            return 1


        @module(image="{BASE_IMAGE}", packages=["regex"])
        def clean(src: InputFile, out: OutputFile, lower: bool = True) -> None:
            """Keep the words."""
            out.write_text(" ".join(WORD.findall(substitute("_", " ", src.read_text()))))
        ''')
    )
    built = workspace.cli("spec", "build", "clean.py:clean")
    assert built.returncode == 0, built.stderr
    assert "clean.py imports regex, not installed here" in built.stderr
    assert workspace.cli("validate", "clean.yaml").returncode == 0
    direct = workspace.cli("validate", "clean.py:clean")
    assert direct.returncode == 0 and "(2 inputs, 1 outputs" in direct.stdout, direct.stderr
    assert "regex" not in sys.modules  # the stand-in left with the read
    assert "packages:\n    - regex" in (workspace.root / "clean.yaml").read_text()


def test_without_stand_ins_a_missing_import_still_fails_the_import(tmp_path: Path) -> None:
    from containerexec.authoring.targets import load_target
    from containerexec.errors import UsageError

    (tmp_path / "needs.py").write_text("import regex\n\ndef f(): ...\n")
    with pytest.raises(UsageError, match="ModuleNotFoundError: No module named 'regex'"):
        load_target(f"{tmp_path}/needs.py:f")


def test_only_the_files_own_imports_are_stood_in_for(tmp_path: Path) -> None:
    """A library's optional import (try: import x / except ImportError) still fails as the
    library expects, while the module file's own missing import gets its stand-in."""
    from containerexec.authoring.targets import load_target

    (tmp_path / "optional_user.py").write_text(
        "try:\n    import regex\n    FAST = True\nexcept ImportError:\n    FAST = False\n"
    )
    (tmp_path / "mod.py").write_text("import optional_user\nimport regex\n\ndef f(): ...\n")
    stood_in: list[str] = []
    f = load_target(f"{tmp_path}/mod.py:f", stand_ins=stood_in)
    assert stood_in == ["regex"]
    assert sys.modules[f.__module__].optional_user.FAST is False
    sys.modules.pop("optional_user", None)
