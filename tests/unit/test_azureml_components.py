"""Issue 25, item 2: Azure ML pipeline components expand into sub-DAGs whose jobs are
named 'parent/child'; cycles and unknown bindings are refused, located. No engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from containerexec.errors import PipelineError
from containerexec.formats.amlpipeline import load_pipeline
from containerexec.formats.azureml import load_image_map
from containerexec.model import names
from containerexec.model.pipelinecheck import validate_pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "specs" / "azureml"
IMAGES = load_image_map([str(EXAMPLES / "images.yaml")])
SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json"


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml's own deprecation warnings (marshmallow)
def test_the_component_used_twice_loads_with_azure_ai_ml_and_is_two_sub_dags() -> None:
    from azure.ai.ml import load_job

    aml = load_job(source=str(EXAMPLES / "twice.yml"))
    assert {n: type(j).__name__ for n, j in aml.jobs.items()} == {
        "short": "Pipeline",
        "long": "Pipeline",
    }
    assert set(aml.jobs["short"].component.jobs) == {"count", "keep"}
    converted = load_pipeline(EXAMPLES / "twice.yml", IMAGES)
    jobs = converted.data["jobs"]
    assert list(jobs) == ["short/count", "short/keep", "long/count", "long/keep"]
    # The parent's bindings reach each use; an unbound input takes the component's default.
    assert jobs["short/count"]["inputs"] == {"corpus": "${{inputs.corpus}}", "min_length": 1}
    assert jobs["long/count"]["inputs"] == {"corpus": "${{inputs.corpus}}", "min_length": 4}
    assert jobs["short/keep"]["inputs"] == {
        "total": "${{jobs.short/count.outputs.total}}",
        "label": "${{inputs.label}}",
    }
    # 'long' binds no label: the optional input is left unset, and its segment drops.
    assert jobs["long/keep"]["inputs"] == {"total": "${{jobs.long/count.outputs.total}}"}
    # The component's output reaches the parent's through the job that fills it.
    assert converted.data["outputs"] == {
        "all_words": "${{jobs.short/keep.outputs.summary}}",
        "long_words": "${{jobs.long/keep.outputs.summary}}",
    }
    assert jobs["short/keep"]["module"] != jobs["long/keep"]["module"]  # two inline components
    assert jobs["short/count"]["module"] == jobs["long/count"]["module"] == "count.yml"
    assert converted.spec.jobs["long/keep"].inputs == jobs["long/keep"]["inputs"]


def nested(tmp_path: Path, inner_jobs: str, outer_inputs: str = "") -> Path:
    head = textwrap.dedent(
        f"""\
        $schema: {SCHEMA}
        type: pipeline
        inputs:
          text: {{type: string}}
          extra: {{type: string, optional: true}}
        outputs:
          out: {{type: uri_folder}}
        jobs:
        """
    )
    (tmp_path / "inner.yml").write_text(head + textwrap.indent(inner_jobs, "  "))
    return write(
        tmp_path / "p.yml",
        f"""\
        type: pipeline
        inputs: {{word: hi}}
        jobs:
          use:
            type: pipeline
            component: ./inner.yml
            inputs:
              text: ${{{{parent.inputs.word}}}}{outer_inputs}
            outputs: {{out: "${{{{parent.outputs.final}}}}"}}
          after:
            command: cat ${{{{inputs.got}}}}/x
            environment: {{image: img}}
            inputs: {{got: "${{{{parent.jobs.use.outputs.out}}}}"}}
        """,
    )


ECHO = """\
echo:
  command: printf '%s' ${{inputs.t}} > ${{outputs.o}}/x
  environment: {image: img}
  inputs: {t: "say-${{parent.inputs.text}}"}
  outputs: {o: "${{parent.outputs.out}}"}
"""


def test_a_template_and_a_reference_to_the_component_s_output_are_bound(tmp_path: Path) -> None:
    converted = load_pipeline(nested(tmp_path, ECHO), {})
    jobs = converted.data["jobs"]
    assert jobs["use/echo"]["inputs"] == {"t": "say-${{inputs.word}}"}
    assert jobs["after"]["inputs"] == {"got": "${{jobs.use/echo.outputs.o}}"}
    assert converted.data["outputs"] == {"final": "${{jobs.use/echo.outputs.o}}"}
    after = converted.modules[jobs["after"]["module"]][0].spec
    assert after.inputs["got"].type == "directory"  # typed through the component's job


def test_unknown_bindings_are_refused_where_they_are_written(tmp_path: Path) -> None:
    inner = ECHO.replace("${{parent.inputs.text}}", "${{parent.inputs.txet}}")
    path = nested(tmp_path, inner, "\n              nope: 1")
    path.write_text(
        path.read_text().replace("parent.jobs.use.outputs.out", "parent.jobs.use.outputs.bad")
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    text = str(err.value)
    inner_file = tmp_path / "inner.yml"
    assert (
        f"{inner_file}:12:17: jobs.echo.inputs.t: '${{{{parent.inputs.txet}}}}' names no "
        "input of this pipeline; did you mean 'text'?"
    ) in text
    assert f"{path}:9:7: jobs.use.inputs.nope: pipeline component 'inner.yml' has no input " in text
    assert (
        f"{path}:14:19: jobs.after.inputs.got: '${{{{parent.jobs.use.outputs.bad}}}}': "
        "job 'use' has no output 'bad' (out)"
    ) in text


def test_a_required_component_input_left_unbound_is_named(tmp_path: Path) -> None:
    path = nested(tmp_path, ECHO)
    path.write_text(path.read_text().replace("text: ${{parent.inputs.word}}", "extra: x"))
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    assert (
        f"{path}:7:5: jobs.use.inputs: input 'text' of pipeline component 'inner.yml' is "
        "required; bind it under jobs.use.inputs"
    ) in str(err.value)


@pytest.mark.parametrize("indirect", [False, True])
def test_a_component_that_includes_itself_is_a_located_cycle(
    tmp_path: Path, indirect: bool
) -> None:
    target = "./b.yml" if indirect else "./a.yml"
    for name, comp in [("a.yml", target), ("b.yml", "./a.yml")]:
        write(
            tmp_path / name,
            f"""\
            $schema: {SCHEMA}
            type: pipeline
            jobs:
              again:
                type: pipeline
                component: {comp}
            """,
        )
    path = write(
        tmp_path / "p.yml",
        """\
        type: pipeline
        jobs:
          top: {type: pipeline, component: ./a.yml}
        """,
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    closing = tmp_path / ("b.yml" if indirect else "a.yml")
    cycle = "a.yml -> b.yml -> a.yml" if indirect else "a.yml -> a.yml"
    assert (
        f"{closing}:6:16: jobs.again.component: cycle: {cycle}; a pipeline component "
        "cannot include itself"
    ) in str(err.value)


def test_a_command_component_called_as_a_pipeline_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yml",
        f"""\
        type: pipeline
        jobs:
          top: {{type: pipeline, component: {EXAMPLES / "count.yml"}}}
        """,
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, IMAGES)
    assert f"{path}:3:36: jobs.top.component: " in str(err.value)
    assert "is not a pipeline component" in str(err.value)


@pytest.mark.parametrize("good", ["a", "a/b", "_x/y_2/z"])
def test_a_pipeline_job_name_may_be_parent_slash_child(good: str) -> None:
    assert names.check_job(good) == good
    assert "/" not in names.job_run_suffix(good)
    assert names.check_run_id(f"p-1.{names.job_run_suffix(good)}")


@pytest.mark.parametrize("bad", ["../a", "a/..", "/a", "a//b", "a/", "a/b c", "a/.b", "a\\b", ""])
def test_a_job_name_refuses_climbing_absolute_and_empty_parts(bad: str) -> None:
    with pytest.raises(ValueError, match="not a pipeline job name"):
        names.check_job(bad)


def test_a_job_inside_another_job_s_folder_is_refused(tmp_path: Path) -> None:
    data = {
        "name": "p",
        "jobs": {"a": {"module": "m.yaml"}, "a/b": {"module": "m.yaml"}},
    }
    with pytest.raises(PipelineError, match="job 'a/b' is inside 'a', which is a job itself"):
        validate_pipeline(data, tmp_path, "p")
