"""Azure ML components and pipelines read into our specs, and written back: no engine needed.

The command translation is also run here under the host's own `sh`, so the quoting
is checked by a real shell; tests/engine/test_azureml.py runs it in containers.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from containerexec.cli import cli
from containerexec.errors import SpecError, UsageError
from containerexec.formats import amlcommand
from containerexec.formats.azureml import load_component, load_image_map
from containerexec.formats.detect import detect
from containerexec.model import placeholders

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "specs" / "azureml"
HOSTILE = ["; touch pwned #", "$(touch pwned)", "`touch pwned`", "a \"q\" 'q' \\", "two\nlines", ""]


def component(tmp_path: Path, body: str, name: str = "c.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run_script(argv: list[str | list[str]], values: dict[str, str], cwd: Path) -> list[str]:
    """Render our argv as a run would, run it with the host's sh, return what it printed."""
    rendered = placeholders.render_argv(argv, values)
    out = subprocess.run(rendered, cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


PRINT_ARGS = "python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))'"


@pytest.mark.parametrize("value", HOSTILE)
def test_every_value_arrives_as_one_literal_argument_in_every_quoting_context(
    tmp_path: Path, value: str
) -> None:
    cmd = amlcommand.translate(
        PRINT_ARGS + " ${{inputs.a}} x${{inputs.a}}y \"in ${{inputs.a}}\" 'in ${{inputs.a}}'",
        ["a"],
        [],
        [],
    )
    assert cmd.problems == []
    args = run_script(cmd.argv("t", []), {"inputs.a": value}, tmp_path)
    assert args == [value, f"x{value}y", f"in {value}", f"in {value}"]
    assert not (tmp_path / "pwned").exists()


def test_an_optional_segment_is_dropped_when_its_input_is_unset(tmp_path: Path) -> None:
    cmd = amlcommand.translate(
        PRINT_ARGS + " $[[--b ${{inputs.b}}]] $[[--both ${{inputs.b}}:${{inputs.c}}]] end",
        ["b", "c"],
        [],
        ["b", "c"],
    )
    argv = cmd.argv("t", ["b", "c"])
    assert run_script(argv, {}, tmp_path) == ["end"]
    assert run_script(argv, {"inputs.b": "$(id) x"}, tmp_path) == ["--b", "$(id) x", "end"]
    both = run_script(argv, {"inputs.b": "1", "inputs.c": ""}, tmp_path)
    assert both == ["--b", "1", "--both", "1:", "end"]


def test_a_segment_of_inputs_that_always_have_a_value_always_stays(tmp_path: Path) -> None:
    cmd = amlcommand.translate(PRINT_ARGS + " $[[--n ${{inputs.n}}]]", ["n"], [], [])
    assert run_script(cmd.argv("t", []), {"inputs.n": "3"}, tmp_path) == ["--n", "3"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo ${{inputs.x}}", "optional input 'x' is used outside a $[[ ... ]] segment"),
        ("echo ${{inputs.nope}}", "'${{inputs.nope}}' names no declared input (x)"),
        ("echo ${{search_space.lr}}", "'${{search_space.lr}}' is not supported here"),
        ("echo $[[--x ${{inputs.x}}", "a '$[[' segment is not closed by ']]'"),
        ("echo 'open", "the command leaves a ' quote open"),
    ],
)
def test_command_problems_are_named(command: str, expected: str) -> None:
    problems = amlcommand.translate(command, ["x"], [], ["x"]).problems
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"$schema": "https://x/commandComponent.schema.json", "command": "a"}, "aml-component"),
        ({"type": "command", "command": "a"}, "aml-component"),
        ({"$schema": "https://x/pipelineJob.schema.json", "jobs": {}}, "aml-pipeline"),
        ({"type": "pipeline", "jobs": {}}, "aml-pipeline"),
        ({"name": "x", "command": ["a"]}, "containerexec"),
        ([1, 2], "containerexec"),
    ],
)
def test_detect_tells_the_formats_apart(data: object, kind: str) -> None:
    assert detect(data) == kind


def test_other_azure_ml_schemas_are_refused_by_name() -> None:
    with pytest.raises(UsageError, match="'commandJob.schema.json' files are not supported"):
        detect({"$schema": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"})


def test_the_example_component_converts_every_field() -> None:
    conv = load_component(EXAMPLES / "count.yml", load_image_map([str(EXAMPLES / "images.yaml")]))
    spec = conv.spec
    assert (spec.name, spec.version) == ("count_words", "3")
    assert spec.description.startswith("Count the words")
    types = {n: p.type for n, p in spec.inputs.items()}
    assert types == {
        "corpus": "directory",
        "stopwords": "file",
        "min_length": "integer",
        "scale": "number",
        "lower": "boolean",
        "label": "string",
        "note": "string",
        "aml_code": "directory",
    }
    assert spec.inputs["stopwords"].optional and spec.inputs["min_length"].default == 1
    assert spec.inputs["aml_code"].default == str(EXAMPLES / "src")
    assert spec.workdir == "/inputs/aml_code"
    assert {n: p.type for n, p in spec.outputs.items()} == {"counts": "directory", "total": "file"}
    assert spec.environment.image == "containerexec/base:bookworm"
    assert spec.resources.shm_size == 64 * 1024**2
    assert spec.network is False and spec.array is None and spec.cache is True
    assert spec.command[:2] == ["sh", "-c"]
    assert ["in_stopwords=${{inputs.stopwords}}"] in spec.command  # an optional group
    assert conv.ignored == ["distribution", "display_name", "tags.team", "resources.instance_count"]


def test_pip_packages_of_a_conda_file_become_declared_python_packages() -> None:
    conv = load_component(EXAMPLES / "report.yml", load_image_map([str(EXAMPLES / "images.yaml")]))
    env = conv.spec.environment
    assert env.python is not None and env.python.packages == ["pyyaml==6.0.1"]
    assert conv.notes == []  # python=3.11 and pip are what the image has already


def test_conda_only_packages_are_named_once_as_not_installed(tmp_path: Path) -> None:
    (tmp_path / "env.yml").write_text("dependencies: [python=3.11, numpy, {pip: [six]}]\n")
    (tmp_path / "c.yml").write_text(
        "type: command\nname: c\ncommand: echo hi\n"
        "environment: {image: containerexec/base:bookworm, conda_file: env.yml}\n"
    )
    conv = load_component(tmp_path / "c.yml", {})
    assert conv.spec.environment.python is not None
    assert conv.spec.environment.python.packages == ["six"]
    assert conv.notes == [
        "environment.conda_file: conda packages are not installed here (numpy); only its "
        "pip dependencies are (environment.python.packages), into the environment's image"
    ]


BASE = """\
type: command
name: t
inputs: {a: {type: string}}
command: echo ${{inputs.a}}
"""


@pytest.mark.parametrize(
    ("environment", "image_map", "image"),
    [
        ("azureml:sk:3", ["sk=img:1"], "img:1"),
        ("azureml:sk:3", ["sk:3=img:3", "sk=img:1"], "img:3"),
        ("azureml:sk@latest", ["sk=img:1"], "img:1"),
        (
            "azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
            ["sklearn-1.5=img:5"],
            "img:5",
        ),
        ("{image: 'mcr.microsoft.com/azureml/x:1'}", ["mcr.microsoft.com/azureml/x:1=y"], "y"),
        ("{image: 'repo/x:1'}", [], "repo/x:1"),
    ],
)
def test_environments_resolve_through_the_image_map(
    tmp_path: Path, environment: str, image_map: list[str], image: str
) -> None:
    path = component(tmp_path, BASE + f"environment: {environment}\n")
    assert load_component(path, load_image_map(image_map)).spec.environment.image == image


def test_an_unmapped_environment_is_refused_with_where_and_how_to_map_it(tmp_path: Path) -> None:
    path = component(tmp_path, BASE + "environment: azureml:sk-env:7\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5:14: environment: environment 'azureml:sk-env:7' is registered" in (
        result.stderr
    )
    assert "--image-map sk-env=IMAGE" in result.stderr and "Traceback" not in result.output
    mapped = CliRunner().invoke(cli, ["validate", str(path), "--image-map", "sk-env=x/y:1"])
    assert mapped.exit_code == 0, mapped.output


def test_the_network_tag_gives_the_container_a_network(tmp_path: Path) -> None:
    body = BASE + "environment: {image: x}\ntags: {containerexec.network: 'true'}\n"
    assert load_component(component(tmp_path, body), {}).spec.network is True


def test_ignored_fields_are_reported_once_on_stderr() -> None:
    result = CliRunner().invoke(
        cli, ["validate", str(EXAMPLES / "count.yml"), "--image-map", str(EXAMPLES / "images.yaml")]
    )
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert lines == [
        f"warning: {EXAMPLES / 'count.yml'}: ignored here (a local run cannot honour them): "
        "distribution, display_name, tags.team, resources.instance_count"
    ]
    assert "valid module 'count_words' 3 (8 inputs, 2 outputs, no array)" in result.stdout


def test_component_problems_are_located(tmp_path: Path) -> None:
    path = component(
        tmp_path,
        """\
        type: command
        name: t
        inputs: {a: {type: tensor}}
        outputs: {o: {type: mlflow_model}}
        environment: {image: x}
        code: ./missing
        command: echo ${{inputs.b}}
        """,
    )
    with pytest.raises(SpecError) as err:
        load_component(path, {})
    text = str(err.value)
    assert f"{path}:3:20: inputs.a.type: expected one of uri_folder" in text
    assert f"{path}:4:21: outputs.o.type: expected one of uri_folder, uri_file" in text
    assert f"{path}:6:7: code: no code folder at '{tmp_path / 'missing'}'" in text
    assert f"{path}:7:10: command: '${{{{inputs.b}}}}' names no declared input (a)" in text


DANGLING = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
jobs:
  component_a:
    component: {count}
    inputs: {{corpus: {{type: uri_folder, path: {data}}}}}
  component_b:
    component: {report}
    inputs:
      counts: ${{{{parent.jobs.componentA.outputs.counts}}}}
"""


def test_a_dangling_job_reference_is_located_with_the_nearest_job(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(
        DANGLING.format(
            count=EXAMPLES / "count.yml", report=EXAMPLES / "report.yml", data=EXAMPLES / "data"
        )
    )
    result = CliRunner().invoke(
        cli, ["pipeline", "validate", str(path), "--image-map", str(EXAMPLES / "images.yaml")]
    )
    assert result.exit_code == 2, result.output
    assert (
        f"{path}:10:15: jobs.component_b.inputs.counts: "
        "'${{parent.jobs.componentA.outputs.counts}}': there is no job "
        "'componentA'; did you mean 'component_a'?"
    ) in result.stderr


def test_the_example_pipeline_converts_to_ours(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(
        cli,
        ["spec", "convert", str(EXAMPLES / "pipeline.yml"), "-o", str(out)]
        + ["--image-map", str(EXAMPLES / "images.yaml")],
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(out.read_text())
    assert data["outputs"] == {"final_report": "${{jobs.report_job.outputs.report}}"}
    assert data["jobs"]["report_job"]["inputs"]["counts"] == "${{jobs.count_job.outputs.counts}}"
    assert data["jobs"]["count_job"]["inputs"]["label"] == "run-${{inputs.top}}"
    assert data["inputs"]["corpus"] == {
        "type": "directory",
        "default": str(EXAMPLES / "data/corpus"),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "count_words.yaml",
        "p.yaml",
        "report.yaml",
        "shout.yaml",
    ]
    assert "settings" in result.stderr and "jobs.count_job.compute" in result.stderr
    valid = CliRunner().invoke(cli, ["pipeline", "validate", str(out)])
    assert valid.exit_code == 0, valid.output


def test_an_array_module_cannot_become_a_command_component() -> None:
    result = CliRunner().invoke(cli, ["spec", "convert", str(ROOT / "specs" / "wordcount.yaml")])
    assert result.exit_code == 2
    assert "module 'wordcount' is an array" in result.stderr


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml's own deprecation warnings (marshmallow)
def test_a_module_converted_to_aml_loads_with_azure_ai_ml_s_own_loader(tmp_path: Path) -> None:
    from azure.ai.ml import load_component as aml_load

    spec = tmp_path / "m.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: shout-it
            version: "2"
            description: Upper-case a file.
            environment: {image: containerexec/base:bookworm}
            inputs:
              src: {type: file}
              sep: {type: string, default: " | "}
              tag: {type: string, optional: true}
            outputs: {out: {type: directory}}
            env: {MODE: "${{inputs.sep}}"}
            command: [python3, -c, "import sys; print(sys.argv)", "${{inputs.src}}",
                      "${{outputs.out}}/a b.txt", [--tag, "${{inputs.tag}}"]]
            resources: {memory: 1g}
            cache: false
            """
        )
    )
    out = tmp_path / "aml" / "m.yml"
    result = CliRunner().invoke(cli, ["spec", "convert", str(spec), "--to", "aml", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "resources.memory: no Azure ML command component field" in result.stderr
    loaded = aml_load(source=str(out))
    assert (loaded.name, loaded.version, loaded.is_deterministic) == ("shout_it", "2", False)
    assert set(loaded.inputs) == {"src", "sep", "tag"} and loaded.inputs["tag"].optional
    assert loaded.command == (
        "export MODE=\"${{inputs.sep}}\"; python3 -c 'import sys; print(sys.argv)' "
        '"${{inputs.src}}" "${{outputs.out}}"\'/a b.txt\' $[[--tag "${{inputs.tag}}"]]'
    )


def test_a_file_given_to_the_wrong_command_says_which_command_runs_it() -> None:
    pipeline = CliRunner().invoke(cli, ["validate", str(EXAMPLES / "pipeline.yml")])
    assert pipeline.exit_code == 2
    assert "is an Azure ML pipeline job; run it: containerexec pipeline run" in pipeline.stderr
    comp = CliRunner().invoke(cli, ["pipeline", "validate", str(EXAMPLES / "count.yml")])
    assert comp.exit_code == 2
    assert "is an Azure ML component; run it: containerexec run" in comp.stderr


def test_our_pipelines_can_use_azure_ml_components(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"""\
        name: mixed
        jobs:
          count: {{module: {EXAMPLES / "count.yml"}, inputs: {{corpus: {EXAMPLES / "data"}}}}}
          report: {{module: {EXAMPLES / "report.yml"},
                   inputs: {{counts: "${{{{jobs.count.outputs.counts}}}}"}}}}
        """.replace("        ", "")
    )
    result = CliRunner().invoke(
        cli, ["pipeline", "validate", str(path), "--image-map", str(EXAMPLES / "images.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "valid pipeline 'mixed' 0.0.0 (2 jobs, 1 links" in result.stdout
