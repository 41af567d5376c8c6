"""Modules and pipelines from Python, without Docker: specs, the in-container entry, export."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from click.testing import CliRunner

from containerexec.authoring import Module, Pipeline, Requirements, from_func, from_yaml, pipeline
from containerexec.authoring.engine import connected
from containerexec.authoring.export import export_code
from containerexec.authoring.targets import load_target
from containerexec.authoring.tracing import building
from containerexec.cli import cli
from containerexec.engine.base import Engine
from containerexec.errors import PipelineError, SpecError, UsageError
from containerexec.model.arrays import expand
from containerexec.model.bindings import bind
from containerexec.model.invocation import container_paths
from containerexec.model.pipelinecheck import load_pipeline
from containerexec.model.placeholders import render_argv
from containerexec.model.spec import load_spec, validate_spec
from containerexec.run.returned import host_paths, port_places

SYSTEM_PYTHON = "/usr/bin/python3"  # has no containerexec, like the images

FUNCTION_MODULE = '''
"""Greets."""
from __future__ import annotations

from containerexec.authoring import InputFile, OutputDir, ShardIndex, ShardValue, module

SEEN: list[str] = []


@module(image="containerexec/base:bookworm", array={"values": ["a", "b"]},
        resources={"memory": "64m"})
def greet(names: InputFile, out: OutputDir, value: ShardValue, index: ShardIndex,
          greeting: str = "hello", times: int = 1, loud: bool = False,
          suffix: str | None = None) -> None:
    """Write one greeting per shard.

    Args:
        names: A file of names.
        out: Where greetings go.
        greeting: The word to greet with.
    """
    SEEN.append(value)
    text = f"{greeting} {value}" * times + (suffix or "")
    (out / f"{index}.txt").write_text(text.upper() if loud else text)
'''

STOPES_MODULE = '''
from __future__ import annotations

import json
from dataclasses import dataclass, field

from containerexec.authoring import ContainerModule, OutputDir


@dataclass
class Config:
    out: OutputDir
    items: list[int] = field(default_factory=lambda: [3, 5])
    label: str = "x"


class Multiply(ContainerModule):
    """Multiply each item."""

    image = "containerexec/base:bookworm"

    def array(self):
        return [{"n": n} for n in self.config.items]

    def requirements(self):
        return {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 2, "max_parallel": 2}

    def name(self):
        return "Multiply_Items"

    def run(self, iteration_value=None, iteration_index=0):
        self.state = getattr(self, "state", []) + [iteration_value]
        (self.config.out / f"{iteration_index}.json").write_text(json.dumps(
            {"value": iteration_value, "state": self.state, "label": self.config.label,
             "items": self.config.items, "config": type(self.config).__name__}))
'''


def load(tmp_path: Path, name: str, text: str, obj: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return load_target(f"{path}:{obj}")


def run_entry(module: Module, bindings_inputs: dict[str, Any], out: Path, shard: int) -> None:
    """Run one shard's command with the host's system python, as the container would."""
    b = bind(module.spec, bindings_inputs, {n: str(out) for n in module.spec.outputs})
    values = container_paths(module.spec, b)
    # Host paths stand in for the container's mount points.
    values = {
        k: (
            b.inputs.get(k.split(".")[1])
            if k.startswith("inputs.")
            and module.spec.inputs[k.split(".")[1]].type in ("file", "directory")
            else str(out)
            if k.startswith("outputs.")
            else v
        )
        for k, v in values.items()
    }
    s = expand(module.spec.array, b.inputs)[shard]
    values |= {"shard.index": str(s.index), "shard.value": s.value, "shard.count": str(s.count)}
    argv = render_argv(module.spec.command, {k: str(v) for k, v in values.items()})
    env = {
        **module.spec.env,
        "CONTAINEREXEC_SHARD_INDEX": str(s.index),
        "CONTAINEREXEC_SHARD_VALUE": s.value,
        "PATH": os.environ["PATH"],
    }
    subprocess.run([SYSTEM_PYTHON, *argv[1:]], env=env, check=True, cwd=out)


def test_function_parameters_become_typed_ports_with_defaults_and_descriptions(
    tmp_path: Path,
) -> None:
    greet = load(tmp_path, "greetmod", FUNCTION_MODULE, "greet")
    spec = greet.spec
    assert spec.name == "greet" and spec.description == "Write one greeting per shard."
    assert {n: p.type for n, p in spec.inputs.items()} == {
        "names": "file",
        "greeting": "string",
        "times": "integer",
        "loud": "boolean",
        "suffix": "string",
    }
    assert spec.inputs["greeting"].default == "hello"
    assert spec.inputs["greeting"].description == "The word to greet with."
    assert spec.inputs["suffix"].optional and spec.inputs["suffix"].default is None
    assert spec.outputs["out"].type == "directory"
    assert ["suffix=${{inputs.suffix}}"] in spec.command  # dropped when unset
    assert spec.resources.memory == 64 * 1024**2


def test_written_function_spec_validates_and_equals_the_in_memory_spec(tmp_path: Path) -> None:
    greet = load(tmp_path, "greetmod", FUNCTION_MODULE, "greet")
    path = greet.write(tmp_path / "specs" / "greet.yaml")
    # Only the source's path differs: relative to the spec file's folder.
    assert greet.spec.source is not None and load_spec(path).source is not None
    assert load_spec(path).source.file == "../greetmod.py"  # type: ignore[union-attr]
    unstamped = greet.spec.model_copy(update={"source": None})
    assert load_spec(path).model_copy(update={"source": None}) == unstamped
    assert from_yaml(path).spec.model_copy(update={"source": None}) == unstamped


def test_function_body_runs_with_only_the_standard_library_and_sees_its_shard(
    tmp_path: Path,
) -> None:
    greet = load(tmp_path, "greetmod", FUNCTION_MODULE, "greet")
    names = tmp_path / "names.txt"
    names.write_text("x\n")
    out = tmp_path / "out"
    out.mkdir()
    run_entry(greet, {"names": names, "times": 2, "loud": True}, out, shard=1)
    assert (out / "1.txt").read_text() == "HELLO BHELLO B"


def test_decorated_function_still_runs_as_a_plain_call_here(tmp_path: Path) -> None:
    greet = load(tmp_path, "greetmod", FUNCTION_MODULE, "greet")
    greet(names=tmp_path, out=tmp_path, value="v", index=7)
    assert (tmp_path / "7.txt").read_text() == "hello v"


def test_stopes_class_maps_array_requirements_name_and_comment(tmp_path: Path) -> None:
    cls = load(tmp_path, "mult", STOPES_MODULE, "Multiply")
    config_cls = load(tmp_path, "mult", STOPES_MODULE, "Config")
    module = cls(config_cls(out=tmp_path / "o", label="y")).as_module()
    spec = module.spec
    assert spec.name == "multiply_items" and spec.description == "Multiply each item."
    # Listed when each run starts, never frozen now: Module.run lists it with the run's values.
    assert spec.array is not None and spec.array.python == "array" and not spec.array.values
    assert spec.array.max_parallel == 2
    remade = module.for_run({}).spec.array
    assert remade is not None and remade.values == ['{"n": 3}', '{"n": 5}']
    assert spec.resources.cpus == 1 and spec.resources.memory == 1024**3
    assert spec.resources.timeout == 120
    assert spec.inputs["label"].default == "y" and set(spec.outputs) == {"out"}
    assert module.defaults == {"out": tmp_path / "o"}


def test_stopes_shard_gets_its_value_and_the_config_rebuilt_from_json(tmp_path: Path) -> None:
    cls = load(tmp_path, "mult", STOPES_MODULE, "Multiply")
    config_cls = load(tmp_path, "mult", STOPES_MODULE, "Config")
    module = cls(config_cls(out=tmp_path, items=[4, 6])).as_module()
    out = tmp_path / "out"
    out.mkdir()
    assert module.for_run is not None
    run_entry(module.for_run({}), {}, out, shard=1)  # type: ignore[arg-type]
    seen = json.loads((out / "1.json").read_text())
    assert seen == {
        "value": {"n": 6},
        "state": [{"n": 6}],
        "label": "x",
        "items": [4, 6],
        "config": "Config",
    }


def test_spec_build_of_a_class_uses_its_config_defaults(tmp_path: Path) -> None:
    source = tmp_path / "mult.py"
    source.write_text(
        textwrap.dedent(STOPES_MODULE)
        .replace("    out: OutputDir\n", "    out: OutputDir | None = None\n")
        .replace("def __init__", "def __init__")
    )
    source.write_text(
        source.read_text()
        + textwrap.dedent("""
        class WithConfig(Multiply):
            def __init__(self, config: Config) -> None:
                super().__init__(config)
        """)
    )
    result = CliRunner().invoke(
        cli, ["spec", "build", f"{source}:WithConfig", "-o", str(tmp_path / "w.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert load_spec(tmp_path / "w.yaml").array is not None


def test_unannotated_path_parameter_is_refused_naming_it(tmp_path: Path) -> None:
    text = """
    from pathlib import Path
    from containerexec.authoring import module

    def f(data: Path) -> None: ...
    """
    f = load(tmp_path, "bad", text, "f")
    with pytest.raises(UsageError, match="parameter 'data' .*InputFile, InputDir"):
        Module.from_func(f, image="containerexec/base:bookworm")


def test_unknown_requirement_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="'gpus' is not supported; known: cpus"):
        Requirements.of({"gpus": 1}, "m.py:M")


def test_spec_build_writes_a_valid_spec_and_refuses_plain_functions(tmp_path: Path) -> None:
    (tmp_path / "greetmod.py").write_text(textwrap.dedent(FUNCTION_MODULE) + "\ndef plain(): ...\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["spec", "build", f"{tmp_path}/greetmod.py:greet"])
    assert ok.exit_code == 0, ok.output
    assert load_spec(tmp_path / "greet.yaml").name == "greet"
    bad = runner.invoke(cli, ["spec", "build", f"{tmp_path}/greetmod.py:plain"])
    assert bad.exit_code == 2 and "decorate the function with @module" in bad.output
    missing = runner.invoke(cli, ["spec", "build", f"{tmp_path}/greetmod.py:nope"])
    assert missing.exit_code == 2 and "candidates: greet" in missing.output


def test_init_writes_a_project_whose_spec_validates_and_matches_its_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "shout", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "shout"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [
        "README.md",
        "data/hello.txt",
        "data/poem.txt",
        "image/Dockerfile",
        "shout.py",
        "shout.yaml",
        "test_shout.py",
    ]
    spec = load_spec(folder / "shout.yaml")
    assert spec.environment.build is not None and spec.environment.build.context == "image"
    again = CliRunner().invoke(cli, ["init", "shout", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "not empty" in again.output


TWO_JOBS = {
    "first.yaml": """
        name: first
        environment: {image: containerexec/base:bookworm}
        inputs: {n: {type: integer, default: 3}}
        outputs: {nums: {type: file, path: nums.txt}}
        command:
          - python3
          - -c
          - "import sys; open(sys.argv[2], 'w').write(' '.join(map(str, range(int(sys.argv[1])))))"
          - "${{inputs.n}}"
          - "${{outputs.nums}}"
    """,
    "second.yaml": """
        name: second
        environment: {image: containerexec/base:bookworm}
        inputs: {nums: {type: file}, tag: {type: string}}
        outputs: {total: {type: file, path: total.txt}}
        command:
          - python3
          - -c
          - "import sys; t = sum(map(int, open(sys.argv[1]).read().split()));
             open(sys.argv[3], 'w').write(sys.argv[2] + str(t))"
          - "${{inputs.nums}}"
          - "${{inputs.tag}}"
          - "${{outputs.total}}"
    """,
    "pipe/two.yaml": """
        name: two
        description: Numbers, then their sum.
        inputs:
          n: {type: integer, default: 4, description: How many numbers.}
          tag: {type: string, default: "sum="}
        outputs: {total: "${{jobs.add.outputs.total}}"}
        jobs:
          make: {module: ../first.yaml, inputs: {n: "${{inputs.n}}"}}
          add:
            module: ../second.yaml
            inputs: {nums: "${{jobs.make.outputs.nums}}", tag: "t-${{inputs.tag}}"}
    """,
}


def write_two_jobs(root: Path) -> Path:
    for name, text in TWO_JOBS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root / "pipe" / "two.yaml"


def test_exported_pipeline_code_builds_the_same_spec_as_its_yaml(tmp_path: Path) -> None:
    path = write_two_jobs(tmp_path)
    out = tmp_path / "elsewhere" / "two.py"
    result = CliRunner().invoke(cli, ["pipeline", "export", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    exported = load_target(f"{out}:two")
    assert isinstance(exported, Pipeline)
    assert exported.spec == load_pipeline(path)
    assert list(exported.plan().order) == ["make", "add"]


def test_pipeline_function_wires_python_and_yaml_modules(tmp_path: Path) -> None:
    write_two_jobs(tmp_path)
    greet = load(tmp_path, "greetmod", FUNCTION_MODULE, "greet")
    second = from_yaml(tmp_path / "second.yaml")

    def both(n: int = 2) -> dict[str, Any]:
        first = from_yaml(tmp_path / "first.yaml")
        made = first(n=n)
        greet(names=made.outputs.nums, greeting="hi")
        return {"total": second(nums=made, tag="x").outputs.total}

    pipe = from_func(both)
    assert isinstance(pipe, Pipeline)
    assert set(pipe.spec.jobs) == {"first", "greet", "second"}
    assert pipe.spec.jobs["greet"].inputs["names"] == "${{jobs.first.outputs.nums}}"
    assert pipe.plan().order[0] == "first"
    pipe.write(tmp_path / "written" / "both.yaml")
    assert load_pipeline(tmp_path / "written" / "both.yaml").jobs["first"].module == "../first.yaml"
    with pytest.raises(UsageError, match="has no output 'nope'; outputs: nums"):
        from_func(lambda: {"x": from_yaml(tmp_path / "first.yaml")().outputs.nope})


def test_export_keeps_templates_and_literal_values(tmp_path: Path) -> None:
    code = export_code(write_two_jobs(tmp_path))
    assert 'tag="t-${{inputs.tag}}"' in code
    assert "n: How many numbers." in code


def test_function_spec_is_checked_like_a_file_with_every_problem_named_by_key(
    tmp_path: Path,
) -> None:
    text = """
    from containerexec.authoring import OutputDir, module

    @module(image="containerexec/base:bookworm", resources={"memory": "lots"},
            env={"X": "${{inputs.nope}}"})
    def bad(out: OutputDir, n: int = 1) -> None: ...
    """
    with pytest.raises(SpecError) as info:
        load(tmp_path, "badmod", text, "bad")
    assert [str(p) for p in info.value.problems] == [
        "badmod.py:bad: resources.memory: expected a size like '512m' or '2g', got 'lots'",
        "badmod.py:bad: env.X: '${{inputs.nope}}' names no declared input (n)",
    ]


def test_written_function_spec_keeps_sizes_as_given_and_tuples_as_lists(tmp_path: Path) -> None:
    text = FUNCTION_MODULE.replace('{"values": ["a", "b"]}', '{"values": ("a", "b")}')
    greet = load(tmp_path, "greetmod", text, "greet")
    written = greet.to_yaml()
    assert written.startswith("# Generated from greetmod.py:greet by containerexec")
    assert "memory: 64m" in written and "- a\n" in written
    assert load_spec(greet.write(tmp_path / "greet.yaml")) == greet.spec


def test_invalid_traced_pipeline_lists_its_problems_like_a_file() -> None:
    def empty() -> None:
        return None

    with pytest.raises(PipelineError) as info:
        pipeline(empty)
    assert [p.loc for p in info.value.problems] == ["jobs"]
    assert str(info.value.problems[0]).startswith("@pipeline ")


def test_tracing_ends_with_the_pipeline_function_even_when_it_raises(tmp_path: Path) -> None:
    write_two_jobs(tmp_path)
    first = from_yaml(tmp_path / "first.yaml")

    def broken() -> None:
        first(n=1)
        raise UsageError("stop")

    with pytest.raises(UsageError, match="stop"):
        pipeline(broken)
    assert not building()
    with pytest.raises(UsageError, match=r"\.job\(\) works only inside a @pipeline"):
        first.job("again")


def test_pipeline_main_reports_through_the_writer_it_is_given(tmp_path: Path) -> None:
    pipe = from_yaml(write_two_jobs(tmp_path))
    assert isinstance(pipe, Pipeline)
    lines: list[str] = []
    status = pipe.main(
        ["-i", "no-equals-sign", "--runs-dir", str(tmp_path / "runs")], out=lines.append
    )
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "no-equals-sign" in lines[0]


def test_a_given_engine_is_used_as_is_and_not_closed() -> None:
    engine = MagicMock(spec=Engine)
    with connected(engine) as got:
        assert got is engine
    assert engine.mock_calls == []


def test_a_run_remakes_a_class_module_with_its_values_in_the_config(tmp_path: Path) -> None:
    cls = load(tmp_path, "mult", STOPES_MODULE, "Multiply")
    config_cls = load(tmp_path, "mult", STOPES_MODULE, "Config")
    instance = cls(config_cls(out=tmp_path / "o", label="y"))
    module = instance.as_module()
    assert module.for_run is not None
    remade = module.for_run({"out": str(tmp_path / "o2"), "label": "z"})
    assert remade.defaults == {"out": tmp_path / "o2"}  # a str for a path port becomes a Path
    assert remade.spec.inputs["label"].default == "z"
    assert instance.config.label == "y"  # the caller's instance is left as it was


def test_returned_container_paths_become_the_host_paths_of_their_ports(tmp_path: Path) -> None:
    spec = validate_spec(
        {
            "name": "m",
            "environment": {"image": "x"},
            "inputs": {"data": {"type": "directory"}, "n": {"type": "string"}},
            "outputs": {"out": {"type": "directory"}, "report": {"type": "file"}},
            "command": ["true"],
        },
        "m",
    )
    b = bind(
        spec,
        {"data": str(tmp_path), "n": "/outputs/out"},
        {"out": str(tmp_path / "o"), "report": str(tmp_path / "r.txt")},
    )
    places = port_places(spec, b)
    value = {"a": ["/outputs/out/x/y.txt", "/outputs/report/r.txt", "/inputs/data/f"], "n": 3}
    assert host_paths(value, places) == {
        "a": [f"{tmp_path}/o/x/y.txt", f"{tmp_path}/r.txt", f"{tmp_path}/f"],
        "n": 3,
    }
    assert host_paths("/outputs/outer", places) == "/outputs/outer"  # not inside a port
