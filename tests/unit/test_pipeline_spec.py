"""Pipeline specs: valid ones plan in order; every graph and type problem is refused at once."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from containerexec.cli import cli
from containerexec.errors import PipelineError
from containerexec.model.graph import edges, levels, render_dot, render_text
from containerexec.model.pipeline import (
    PipelineSpec,
    compatible,
    input_refs,
    parse_value,
    render_template,
)
from containerexec.model.pipelinecheck import check_pipeline, load_pipeline, plan

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "make.yaml": """\
        name: make
        environment: {image: containerexec/base:bookworm}
        inputs: {seed: {type: string, default: x}}
        outputs: {out: {type: file, path: out.txt}}
        command: [python3, -c, "pass", "${{inputs.seed}}", "${{outputs.out}}"]
        """,
    "use.yaml": """\
        name: use
        environment: {image: containerexec/base:bookworm}
        inputs: {src: {type: file}, n: {type: integer, default: 1}}
        outputs: {out: {type: directory}}
        command: [python3, -c, "pass", "${{inputs.src}}", "${{inputs.n}}", "${{outputs.out}}"]
        """,
    "join.yaml": """\
        name: join
        environment: {image: containerexec/base:bookworm}
        inputs: {left: {type: directory}, right: {type: directory}}
        outputs: {out: {type: file, path: joined.txt}}
        command: [python3, -c, "pass", "${{inputs.left}}", "${{inputs.right}}", "${{outputs.out}}"]
        """,
}
DIAMOND = """\
    name: diamond
    inputs: {seed: {type: string, default: abc}}
    outputs: {result: "${{jobs.d.outputs.out}}"}
    jobs:
      a: {module: make.yaml, inputs: {seed: "${{inputs.seed}}"}}
      b: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
      c: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.out}}", n: 2}}
      d: {module: join.yaml, inputs: {left: "${{jobs.b.outputs.out}}",
                                      right: "${{jobs.c.outputs.out}}"}}
    """


def write(tmp_path: Path, pipeline: str) -> Path:
    for name, text in MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(pipeline))
    return path


def problems(tmp_path: Path, pipeline: str) -> list[str]:
    with pytest.raises(PipelineError) as info:
        check_pipeline(write(tmp_path, pipeline))
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_diamond_plans_in_dependency_order(tmp_path: Path) -> None:
    p = check_pipeline(write(tmp_path, DIAMOND))
    assert p.order.index("a") < p.order.index("b") < p.order.index("d")
    assert p.jobs["d"].needs == ("b", "c")
    assert p.downstream("a") == {"b", "c", "d"}
    assert p.downstream("b") == {"d"}
    assert p.output_type("result") == "file"
    assert levels(p.pipeline) == [["a"], ["b", "c"], ["d"]]


def test_example_pipeline_is_valid() -> None:
    p = check_pipeline(ROOT / "specs" / "wordstats" / "pipeline.yaml")
    assert list(p.jobs) == ["split", "count", "merge", "top"]
    assert p.jobs["count"].module.array is not None


def test_cycle_is_named_as_a_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: loop
        jobs:
          a: {module: use.yaml, inputs: {src: "${{jobs.c.outputs.out}}"}}
          b: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
          c: {module: use.yaml, inputs: {src: "${{jobs.b.outputs.out}}"}}
        """,
    )
    cycles = [p for p in found if "cycle:" in p]
    assert len(cycles) == 1
    assert (
        "a -> b -> c -> a" in cycles[0]
        or "b -> c -> a -> b" in cycles[0]
        or "c -> a -> b -> c" in cycles[0]
    )
    assert cycles[0].startswith(str(tmp_path / "pipeline.yaml") + ":")


def test_job_feeding_itself_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: self
        jobs:
          a: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
        """,
    )
    assert any("a job cannot feed itself (a -> a)" in p for p in found)


def test_type_mismatch_directory_output_into_file_input(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: mismatch
        jobs:
          a: {module: make.yaml}
          b: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
          c: {module: use.yaml, inputs: {src: "${{jobs.b.outputs.out}}"}}
        """,
    )
    assert len(found) == 1
    assert ":5:" in found[0] and "jobs.c.inputs.src" in found[0]
    assert "type mismatch: jobs.b.outputs.out is a directory" in found[0]
    assert "takes a file" in found[0]


def test_all_problems_are_reported_at_once_with_locations(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: many
        inputs: {seed: {type: string}}
        outputs: {result: "${{jobs.nope.outputs.out}}", other: "plain"}
        jobs:
          a: {module: make.yaml, inputs: {sede: "${{inputs.seed}}"}}
          b: {module: use.yaml, inputs: {src: "${{jobs.a.outputs.outt}}", n: "many"}}
          c: {module: use.yaml, inputs: {src: "${{jobs.x.outputs.out}}"}}
          d: {module: use.yaml, inputs: {n: "${{inputs.sed}}"}}
          e: {module: missing.yaml}
        """,
    )
    text = "\n".join(found)
    assert "outputs.result: '${{jobs.nope.outputs.out}}' names no job" in text
    assert "outputs.other: a pipeline output takes a job output" in text
    assert "jobs.a.inputs.sede: module 'make' has no input 'sede'; did you mean 'seed'?" in text
    assert "has no output 'outt'; did you mean 'out'?" in text
    assert "jobs.b.inputs.n: input 'n' of module 'use' takes an integer" in text
    assert "'${{jobs.x.outputs.out}}' names no job" in text
    assert "'${{inputs.sed}}' names no pipeline input; did you mean 'seed'?" in text
    assert "input 'src' (file) of module 'use' is required" in text
    assert "jobs.e.module: module 'missing.yaml'" in text
    assert all(
        p.startswith(str(tmp_path / "pipeline.yaml") + ":")
        or p.startswith(str(tmp_path / "missing.yaml"))
        for p in found
    )


def test_module_spec_errors_carry_the_module_path(tmp_path: Path) -> None:
    path = write(tmp_path, "name: broken\njobs:\n  a: {module: bad.yaml}\n")
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nenvironment: {image: x}\ncommand: []\ncolour: red\n"
    )
    with pytest.raises(PipelineError) as info:
        check_pipeline(path)
    text = str(info.value)
    assert "jobs.a.module: module 'bad.yaml' is invalid" in text
    assert f"{tmp_path / 'bad.yaml'}:4:1: colour: unknown key 'colour'" in text


def test_schema_errors_are_located(tmp_path: Path) -> None:
    found = problems(tmp_path, "name: Bad Name\njobs:\n  a: {module: make.yaml, input: {}}\n")
    assert any(":1:7: name:" in p for p in found)
    assert any(
        ":3:26: jobs.a.input: unknown key 'input'; did you mean 'inputs'?" in p for p in found
    )


def test_literal_paths_are_checked_relative_to_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    check_pipeline(
        write(tmp_path, "name: lit\njobs:\n  a: {module: use.yaml, inputs: {src: data.txt}}\n")
    )
    found = problems(
        tmp_path, "name: lit\njobs:\n  a: {module: use.yaml, inputs: {src: nothere.txt}}\n"
    )
    assert "'nothere.txt' (relative to the pipeline file) is not one" in found[0]


def test_pipeline_input_type_must_fit_the_module_input(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: types
        inputs: {where: {type: directory}}
        jobs:
          a: {module: use.yaml, inputs: {src: "${{inputs.where}}"}}
        """,
    )
    assert "type mismatch: pipeline input 'where' is a directory" in found[0]


def test_job_output_inside_a_string_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: text
        jobs:
          a: {module: make.yaml}
          b: {module: make.yaml, inputs: {seed: "x-${{jobs.a.outputs.out}}"}}
        """,
    )
    assert "a job output must be the whole value" in found[0]


def test_parse_value_kinds() -> None:
    assert parse_value(3).kind == "literal"
    assert parse_value("${{ inputs.x }}").name == "x"
    job = parse_value("${{jobs.a.outputs.o}}")
    assert (job.kind, job.name, job.output) == ("job", "a", "o")
    assert parse_value("run-${{inputs.x}}").kind == "template"
    with pytest.raises(ValueError, match="unknown placeholder"):
        parse_value("${{shard.index}}")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("${{inputs.a}}${{inputs.b}}", "template"),  # two placeholders are not one whole value
        ("$${{inputs.a}}", "template"),
        ("a;b ${{inputs.a}} 'c'\n", "template"),
        ("\n ${{ inputs.a }} \n", "input"),
        ("no placeholder: $ {{ }} ;", "literal"),
    ],
)
def test_parse_value_of_hostile_texts(text: str, kind: str) -> None:
    assert parse_value(text).kind == kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{inputs.a", "unterminated placeholder in '${{inputs.a'"),
        ("${{jobs.a.outputs.o}}${{inputs.b}}", "a job output must be the whole value"),
        ("${{outputs.o}}", "unknown placeholder '${{outputs.o}}'; expected inputs.NAME or jobs."),
        ("${{inputs.a.b}}", "unknown placeholder '${{inputs.a.b}}'"),
    ],
)
def test_parse_value_refuses_what_a_pipeline_does_not_allow(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_value(text)


def test_render_template_is_one_pass_and_writes_booleans_as_yaml() -> None:
    values = {"a": "${{inputs.b}}", "b": "SECRET", "t": True, "n": 3}
    assert render_template("$${{inputs.a}};${{ inputs.t }}-${{inputs.n}}", values) == (
        "$${{inputs.b}};true-3"
    )
    with pytest.raises(KeyError):
        render_template("${{inputs.unset}}", values)


def test_input_refs_lists_pipeline_inputs_only() -> None:
    assert input_refs("${{inputs.a}}-${{jobs.j.outputs.o}}/${{inputs.b}}") == ["a", "b"]
    assert input_refs(3) == []


def test_compatible_types() -> None:
    assert compatible("file", "file") and compatible("integer", "number")
    assert compatible("integer", "string")
    assert not compatible("directory", "file") and not compatible("string", "file")
    assert not compatible("number", "integer")


def test_plan_checks_a_pipeline_built_in_code(tmp_path: Path) -> None:
    write(tmp_path, DIAMOND)
    spec = PipelineSpec.model_validate(
        {
            "name": "code",
            "jobs": {
                "a": {"module": "make.yaml"},
                "b": {"module": "use.yaml", "inputs": {"src": "${{jobs.a.outputs.nope}}"}},
            },
        }
    )
    with pytest.raises(PipelineError) as info:
        plan(spec, tmp_path)
    assert "jobs.b.inputs.src: job 'a' (module 'make') has no output 'nope'" in str(info.value)


def test_load_pipeline_needs_no_modules(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(DIAMOND))
    spec = load_pipeline(path)  # the module files do not exist here
    assert edges(spec)[0] == ("a", "out", "b", "src")


def test_graph_text_and_dot(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, DIAMOND))
    text = render_text(spec)
    assert "[1] b (use.yaml)  <- a.out -> src" in text
    assert "[2] d (join.yaml)  <- b.out -> left, c.out -> right" in text
    assert "output result <- d.out" in text
    dot = render_dot(spec)
    assert dot.startswith('digraph "diamond" {')
    assert '"a" -> "b" [label="out -> src"];' in dot
    assert '"d" -> "out:result"' in dot


def test_cli_validate_graph_and_refusal(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, DIAMOND)
    result = runner.invoke(cli, ["pipeline", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid pipeline 'diamond'" in result.output
    result = runner.invoke(cli, ["pipeline", "graph", str(good), "--dot", str(tmp_path / "g.dot")])
    assert result.exit_code == 0 and "[2] d" in result.output
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\njobs:\n  a: {module: use.yaml, inputs: "
        "{src: '${{jobs.b.outputs.out}}'}}\n  b: {module: use.yaml, inputs: "
        "{src: '${{jobs.a.outputs.out}}'}}\n"
    )
    result = runner.invoke(cli, ["pipeline", "validate", str(bad)])
    assert result.exit_code == 2
    assert "cycle: " in result.output and "nothing was run" in result.output
    assert "Traceback" not in result.output
