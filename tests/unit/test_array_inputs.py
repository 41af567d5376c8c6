"""Issue 22 item 1: an array's `glob.input` / `lines.input` must name a declared input of the
type that array reads. `validate`, `run` and `spec build` refuse it with exit 2, located and
with a 'did you mean' (before, `validate` accepted it and `run` died with a KeyError)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.cli import cli
from containerexec.errors import SpecError, UsageError
from containerexec.model.arrays import expand
from containerexec.model.spec import ArraySpec, validate_spec


def glob_spec(ws: FakeWorkspace, array: str, corpus: str = "directory") -> Path:
    return ws.spec(
        "name: wc\n"
        f"inputs:\n  corpus: {{type: {corpus}}}\n  listing: {{type: file, optional: true}}\n"
        "outputs: {out: {type: directory}}\n"
        "command: [cat, '${{inputs.corpus}}/${{shard.value}}', '${{outputs.out}}']\n"
        f"array:\n  {array}\n"
    )


def refusal(ws: FakeWorkspace, spec: Path, *args: str) -> list[str]:
    """The problem lines of `containerexec ARGS SPEC`, which must exit 2 with no traceback."""
    done = ws.cli(*args, str(spec))
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    head, *problems = done.stderr.splitlines()
    assert head.endswith("nothing was run.")
    return problems


@pytest.mark.parametrize("command", [("validate",), ("run", "-i", "corpus=data")])
def test_a_glob_input_naming_no_input_is_refused_with_did_you_mean(
    workspace: FakeWorkspace, command: tuple[str, ...]
) -> None:
    workspace.folder("data", {"a.txt": "x"})
    spec = glob_spec(workspace, "glob: {input: corpu, pattern: '*.txt'}")
    assert refusal(workspace, spec, *command) == [
        f"{spec}:9:17: array.glob.input: 'corpu' names no declared input; did you mean 'corpus'?"
    ]
    assert workspace.engine.created == []


def test_a_lines_input_far_from_any_input_lists_the_inputs(workspace: FakeWorkspace) -> None:
    spec = glob_spec(workspace, "lines: {input: zzz}")
    assert refusal(workspace, spec, "validate") == [
        f"{spec}:9:18: array.lines.input: 'zzz' names no declared input; inputs: corpus, "
        "listing; a lines array needs a file input"
    ]
    for array in ("lines: {input: listing}", "glob: {input: corpus, pattern: '*.txt'}"):
        done = workspace.cli("validate", str(glob_spec(workspace, array)))
        assert done.returncode == 0, done


@pytest.mark.parametrize("corpus", ["file", "string"])
def test_a_glob_over_a_file_or_a_string_input_is_refused(
    workspace: FakeWorkspace, corpus: str
) -> None:
    spec = glob_spec(workspace, "glob: {input: corpus, pattern: '*.txt'}", corpus=corpus)
    assert refusal(workspace, spec, "validate") == [
        f"{spec}:9:17: array.glob.input: input 'corpus' is a {corpus}; a glob array needs a "
        "directory input (type: directory)"
    ]


def test_lines_over_a_directory_is_refused_on_run(workspace: FakeWorkspace) -> None:
    workspace.folder("data", {"a.txt": "x"})
    spec = glob_spec(workspace, "lines: {input: corpus}")
    assert refusal(workspace, spec, "run", "-i", "corpus=data") == [
        f"{spec}:9:18: array.lines.input: input 'corpus' is a directory; a lines array needs a "
        "file input (type: file)"
    ]


def test_every_problem_is_listed_with_the_array_one(workspace: FakeWorkspace) -> None:
    spec = glob_spec(workspace, "glob: {input: corpu, pattern: '*.txt'}\n  max_parallel: 0")
    problems = refusal(workspace, spec, "validate")
    assert [p.split(": ")[1] for p in problems] == ["array.glob.input", "array.max_parallel"]


def test_an_unset_optional_array_input_is_a_usage_error_not_a_key_error() -> None:
    array = ArraySpec.model_validate({"lines": {"input": "listing"}})
    with pytest.raises(UsageError, match="array.lines.input: input 'listing' is not set"):
        expand(array, {})


def test_run_of_an_unset_optional_lines_input_exits_2(workspace: FakeWorkspace) -> None:
    workspace.folder("data", {"a.txt": "x"})
    spec = glob_spec(workspace, "lines: {input: listing}")
    done = workspace.cli("run", str(spec), "-i", "corpus=data")
    assert done.returncode == 2, done
    assert "input 'listing' is not set; the array reads it: pass -i listing=PATH" in done.stderr


PY_MODULE = """\
from containerexec.authoring import InputDir, OutputDir, ShardValue, module


@module(image="containerexec/base:bookworm", array={ARRAY})
def count(corpus: InputDir, out: OutputDir, name: ShardValue) -> None:
    (out / name).write_text((corpus / name).read_text())
"""


def py_module(tmp_path: Path, array: str) -> Path:
    path = tmp_path / "wcmod.py"
    path.write_text(textwrap.dedent(PY_MODULE.replace("{ARRAY}", array)))
    return path


def test_spec_build_of_a_python_glob_typo_is_refused_naming_the_function(tmp_path: Path) -> None:
    source = py_module(tmp_path, '{"glob": {"input": "corpu", "pattern": "*.txt"}}')
    result = CliRunner().invoke(cli, ["spec", "build", f"{source}:count"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "Error: wcmod.py:count: 1 problem; nothing was run.",
        "wcmod.py:count: array.glob.input: 'corpu' names no declared input; did you mean 'corpus'?",
    ]
    assert not (tmp_path / "count.yaml").exists()


def test_the_decorator_itself_refuses_a_python_glob_typo(tmp_path: Path) -> None:
    source = py_module(tmp_path, '{"glob": {"input": "corpu", "pattern": "*.txt"}}')
    with pytest.raises(SpecError, match="wcmod.py:count: array.glob.input: 'corpu' names no"):
        load_target(f"{source}:count")


def test_a_python_lines_array_over_a_directory_is_refused() -> None:
    data = {
        "name": "m",
        "environment": {"image": "x"},
        "inputs": {"corpus": {"type": "directory"}},
        "command": ["true"],
        "array": {"lines": {"input": "corpus"}},
    }
    with pytest.raises(SpecError) as caught:
        validate_spec(data, "m.py:m")
    assert [str(p) for p in caught.value.problems] == [
        "m.py:m: array.lines.input: input 'corpus' is a directory; a lines array needs a file "
        "input (type: file)"
    ]
