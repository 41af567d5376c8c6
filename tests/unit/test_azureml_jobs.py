"""Azure ML pipeline jobs as they are written: inline command jobs (no component) and
registered components (`azureml:NAME:VERSION`) through --component-map. No engine needed."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from containerexec.cli import cli
from containerexec.errors import PipelineError, UsageError
from containerexec.formats.amlpipeline import load_pipeline
from containerexec.formats.azureml import load_image_map
from containerexec.model import placeholders

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "specs" / "azureml"
IMAGES = load_image_map([str(EXAMPLES / "images.yaml")])
HOSTILE = ["; touch pwned #", "$(touch pwned)", "`touch pwned`", "a \"q\" 'q' \\", "two\nlines", ""]
PRINT_ARGS = "python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))'"


def run_script(argv: list[str | list[str]], values: dict[str, str], cwd: Path) -> list[str]:
    """Render our argv as a run would, run it with the host's sh, return what it printed."""
    rendered = placeholders.render_argv(argv, values)
    out = subprocess.run(rendered, cwd=cwd, capture_output=True, text=True, check=True)
    result: list[str] = json.loads(out.stdout)
    return result


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["pipeline", "validate", *args])
    return result.exit_code, result.output


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml's own deprecation warnings (marshmallow)
def test_the_inline_example_loads_with_azure_ai_ml_and_runs_here_as_two_linked_jobs() -> None:
    from azure.ai.ml import load_job

    aml = load_job(source=str(EXAMPLES / "inline.yml"))
    assert set(aml.jobs) == {"hello_job", "shout_job"}
    assert all(type(job).__name__ == "Command" for job in aml.jobs.values())
    converted = load_pipeline(EXAMPLES / "inline.yml", IMAGES)
    jobs = converted.data["jobs"]
    assert jobs["hello_job"]["inputs"] == {
        "greeting": "${{inputs.greeting}}",
        "name": "${{inputs.name}}",
    }
    assert jobs["shout_job"]["inputs"] == {
        "hello_input": "${{jobs.hello_job.outputs.hello_output}}"
    }
    assert converted.data["outputs"] == {"shouted": "${{jobs.shout_job.outputs.loud}}"}
    hello = converted.modules[jobs["hello_job"]["module"]][0].spec
    assert hello.environment.image == "containerexec/base:bookworm"  # through the image map
    assert (set(hello.inputs), set(hello.outputs)) == ({"greeting", "name"}, {"hello_output"})
    shout = converted.modules[jobs["shout_job"]["module"]][0].spec
    assert shout.inputs["hello_input"].type == "directory"
    assert converted.ignored == ["settings", "jobs.hello_job.compute"]
    code, output = validate(
        str(EXAMPLES / "inline.yml"), "--image-map", str(EXAMPLES / "images.yaml")
    )
    assert code == 0, output
    assert "(2 jobs, 1 links; order: hello_job, shout_job)" in output


TYPED = """\
type: pipeline
inputs:
  data: {{type: uri_file, path: {data}}}
  maybe: {{type: string, optional: true}}
jobs:
  make:
    command: cp ${{{{inputs.src}}}} ${{{{outputs.out}}}}
    environment: {{image: img}}
    inputs: {{src: "${{{{parent.inputs.data}}}}"}}
    outputs: {{out: {{type: uri_file}}}}
  use:
    command: {command}
    environment: {{image: img}}
    code: {code}
    environment_variables: {{MODE: fast}}
    inputs:
      f: ${{{{parent.jobs.make.outputs.out}}}}
      n: 3
      x: 0.5
      flag: true
      label: run-${{{{parent.inputs.data}}}}
      opt: ${{{{parent.inputs.maybe}}}}
      table: {{type: uri_folder, path: {folder}}}
"""


def typed(tmp_path: Path, command: str) -> Path:
    return write(
        tmp_path / "p.yml",
        TYPED.format(
            data=EXAMPLES / "data" / "stopwords.txt",
            command=command,
            code=EXAMPLES / "src",
            folder=EXAMPLES / "data" / "corpus",
        ),
    )


def test_an_inline_job_s_ports_are_typed_from_what_is_bound_to_them(tmp_path: Path) -> None:
    path = typed(tmp_path, "cat ${{inputs.f}} $[[--opt ${{inputs.opt}}]]")
    converted = load_pipeline(path, {})
    use = converted.modules[converted.data["jobs"]["use"]["module"]][0].spec
    kinds = {name: (port.type, port.optional) for name, port in use.inputs.items()}
    assert kinds == {
        "f": ("file", False),  # the uri_file output of the inline job it reads
        "n": ("integer", False),
        "x": ("number", False),
        "flag": ("boolean", False),
        "label": ("string", False),
        "opt": ("string", True),
        "table": ("directory", False),
        "aml_code": ("directory", False),
    }
    assert use.env == {"MODE": "fast"} and use.workdir == "/inputs/aml_code"
    assert converted.data["jobs"]["use"]["inputs"]["table"] == str(EXAMPLES / "data" / "corpus")


@pytest.mark.parametrize("value", HOSTILE)
def test_an_inline_job_s_values_arrive_as_one_literal_argument(tmp_path: Path, value: str) -> None:
    path = typed(tmp_path, PRINT_ARGS + ' ${{inputs.label}} "in ${{inputs.label}}"')
    converted = load_pipeline(path, {})
    use = converted.modules[converted.data["jobs"]["use"]["module"]][0].spec
    args = run_script(use.command, {"inputs.label": value}, tmp_path)
    assert args == [value, f"in {value}"]
    assert not (tmp_path / "pwned").exists()


def test_an_inline_job_s_problems_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yml",
        """\
        type: pipeline
        jobs:
          first:
            command: echo hi > ${{outputs.o}}/x
            environment: {image: img}
            outputs: {o: {type: uri_folder}}
          second:
            command: cat ${{inputs.nope}}
            environment: {image: img}
            inputs: {i: "${{parent.jobs.frist.outputs.o}}"}
          third:
            type: sweep
            command: echo
        """,
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    text = str(err.value)
    assert (
        f"{path}:8:14: jobs.second.command: '${{{{inputs.nope}}}}' names no declared input" in text
    )
    assert (
        f"{path}:10:17: jobs.second.inputs.i: '${{{{parent.jobs.frist.outputs.o}}}}': "
        "there is no job 'frist'; did you mean 'first'?"
    ) in text
    assert f"{path}:12:11: jobs.third.type: 'sweep' jobs do not run here" in text


REGISTERED = """\
type: pipeline
jobs:
  count:
    component: {count}
    inputs: {{corpus: {{type: uri_folder, path: {data}}}}}
  report:
    component: {report}
    inputs: {{counts: "${{{{parent.jobs.count.outputs.counts}}}}"}}
"""


def registered(tmp_path: Path, count: str = "azureml:count_words:3", report: str = "") -> Path:
    return write(
        tmp_path / "p.yml",
        REGISTERED.format(
            count=count,
            report=report or "azureml:report@latest",
            data=EXAMPLES / "data" / "corpus",
        ),
    )


def test_an_unmapped_registered_component_is_refused_with_its_line_and_the_flag(
    tmp_path: Path,
) -> None:
    path = registered(tmp_path)
    code, output = validate(str(path), "--image-map", str(EXAMPLES / "images.yaml"))
    assert code == 2, output
    assert (
        f"{path}:4:16: jobs.count.component: component 'azureml:count_words:3' is registered "
        "in Azure ML and has no local file; map it to its YAML: --component-map "
        "count_words=FILE (or --component-map FILE.yaml, a YAML file with the line "
        "'count_words: FILE'); 'count_words:3' maps this version only"
    ) in output
    assert f"{path}:7:16: jobs.report.component: component 'azureml:report@latest'" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("count", "maps"),
    [
        ("azureml:count_words:3", ["count_words=specs/azureml/count.yml"]),
        ("azureml:count_words:3", ["count_words:3=specs/azureml/count.yml"]),
        ("azureml:count_words@latest", ["count_words@latest=specs/azureml/count.yml"]),
        ("azureml:count_words:3", ["MAPFILE"]),
    ],
)
def test_a_registered_component_runs_from_the_file_the_component_map_gives_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: str, maps: list[str]
) -> None:
    monkeypatch.chdir(ROOT)  # NAME=FILE is relative to here; a map file's to its folder
    mapfile = tmp_path / "maps" / "components.yaml"
    mapfile.parent.mkdir()
    mapfile.write_text(f"count_words: {os.path.relpath(EXAMPLES / 'count.yml', mapfile.parent)}\n")
    args = [a for m in maps for a in ("--component-map", str(mapfile) if m == "MAPFILE" else m)]
    code, output = validate(
        str(registered(tmp_path, count=count)), "--image-map", str(EXAMPLES / "images.yaml"),
        *args, "--component-map", f"report={EXAMPLES / 'report.yml'}",
    )  # fmt: skip
    assert code == 0, output
    assert "(2 jobs, 1 links; order: count, report)" in output


def test_a_version_mapped_alone_does_not_serve_another_version(tmp_path: Path) -> None:
    path = registered(tmp_path, count="azureml:count_words:4")
    code, output = validate(
        str(path), "--image-map", str(EXAMPLES / "images.yaml"),
        "--component-map", f"count_words:3={EXAMPLES / 'count.yml'}",
        "--component-map", f"report={EXAMPLES / 'report.yml'}",
    )  # fmt: skip
    assert code == 2
    assert "component 'azureml:count_words:4' is registered in Azure ML" in output


def test_a_bad_component_map_file_is_named(tmp_path: Path) -> None:
    from containerexec.formats.azureml import load_component_map

    bad = write(tmp_path / "m.yaml", "- a\n- b\n")
    with pytest.raises(UsageError, match=f"--component-map '{bad}': expected NAME=FILE"):
        load_component_map([str(bad)])
    assert load_component_map(["a:1=x.yml"]) == {"a:1": Path("x.yml").resolve()}
