"""Issue 25, item 4: Azure ML parallel jobs become a packed array of mini-batches (one
shard each) and a job that appends their rows. The generated driver runs here under the
host's python3, on the shards the real array expansion makes, alone or as the packed
values of one interpreter (run/packing/pydriver.py's Worker); no engine."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from containerexec.authoring.functions import function_call
from containerexec.errors import PipelineError, SpecError
from containerexec.formats.amlpipeline import ConvertedPipeline, load_pipeline
from containerexec.formats.azureml import load_image_map
from containerexec.model import arrays, placeholders
from containerexec.model.spec import ModuleSpec, validate_spec
from containerexec.run.packing import pydriver, pyvalues
from tests.unit.test_packing import invocation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "specs" / "azureml"
IMAGES = load_image_map([str(EXAMPLES / "images.yaml")])
HOSTILE = "; touch pwned # $(touch pwned) `touch pwned` a \"q\" 'q' \\ tab\there *"


def load(path: Path, images: dict[str, str]) -> ConvertedPipeline:
    """A pipeline converted as the CLI converts it (cli/formats.py)."""
    return load_pipeline(path, images, python=function_call)


def module(converted: ConvertedPipeline, job: str) -> ModuleSpec:
    return converted.modules[converted.data["jobs"][job]["module"]][0].spec


def run_shard(spec: ModuleSpec, texts: dict[str, str], shard: arrays.Shard, cwd: Path) -> Any:
    """One shard's argv, rendered as a run renders it, run by the host's python3 in `cwd`."""
    texts = texts | {"shard.index": str(shard.index), "shard.value": shard.value}
    argv = placeholders.render_argv(spec.command, texts)
    env = {**os.environ, **spec.env}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml's own deprecation warnings (marshmallow)
def test_the_example_loads_with_azure_ai_ml_and_is_a_packed_array_of_40_mini_batches() -> None:
    from azure.ai.ml import load_job

    aml = load_job(source=str(EXAMPLES / "parallel.yml"))
    assert type(aml.jobs["score"]).__name__ == "Parallel"
    converted = load(EXAMPLES / "parallel.yml", IMAGES)
    assert list(converted.data["jobs"]) == ["score/mini_batches", "score/append_rows"]
    assert converted.data["outputs"] == {"scored": "${{jobs.score/append_rows.outputs.scores}}"}
    spec = module(converted, "score/mini_batches")
    assert spec.array is not None and spec.array.lines is not None
    array = (spec.array.lines.input, spec.array.group, spec.array.batch_size)
    assert array == ("lines", 25, "auto")
    assert (spec.array.max_parallel, spec.array.max_failed_shards) == (2, 1)  # error_threshold 0
    assert spec.retries.max_attempts == 2 and spec.resources.timeout == 60
    assert spec.environment.image == "containerexec/base:bookworm"  # azureml:text-tools@latest
    shards = arrays.expand(spec.array, {"lines": str(EXAMPLES / "data" / "lines.txt")})
    assert len(shards) == 40 and json.loads(shards[39].value)[-1].startswith("gamma gamma")


def test_each_mini_batch_runs_init_then_run_and_the_rows_are_appended_in_order(
    tmp_path: Path,
) -> None:
    suffix = HOSTILE
    converted = load(EXAMPLES / "parallel.yml", IMAGES)
    spec, append = module(converted, "score/mini_batches"), module(converted, "score/append_rows")
    rows, out = tmp_path / "rows", tmp_path / "scored.txt"
    rows.mkdir()
    lines = EXAMPLES / "data" / "lines.txt"
    texts = {"inputs.lines": str(lines), "inputs.suffix": suffix, "outputs.aml_rows": str(rows)}
    shards = arrays.expand(spec.array, {"lines": str(lines)})
    for shard in reversed(shards[:3]):  # in any order: the rows keep the mini-batches' order
        done = run_shard(spec, texts, shard, EXAMPLES / "parallel")
        assert done.returncode == 0, done.stderr
    argv = placeholders.render_argv(
        append.command, {"inputs.rows": str(rows), "outputs.scores": str(out)}
    )
    subprocess.run(argv, check=True)
    first = lines.read_text().splitlines()[:75]
    assert out.read_text() == "".join(f"{len(t.split())}\t{t}{suffix}\n" for t in first)
    assert not (EXAMPLES / "parallel" / "pwned").exists()


ENTRY = """\
import os
calls = []
def init():
    calls.append("init")
    with open("inits.txt", "a") as f:  # in the code folder, the working directory
        f.write(f"{os.getpid()}\\n")
def run(mini_batch):
    if "boom" in mini_batch[0]:
        raise RuntimeError("boom")
    return [f"{calls}:{os.path.basename(p)}" for p in mini_batch][: {keep}]
"""


def folder_job(tmp_path: Path, keep: str = "", **extra: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "entry.py").write_text(ENTRY.replace("{keep}", keep))
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True, exist_ok=True)
    for name in ["a.txt", "b.txt", "sub/c.txt", "d e.txt", "boom.txt"]:
        (data / name).write_text(name)
    fields = {
        "mini_batch_size": "2",
        "input_data": "${{inputs.data}}",
        "append_row_to": "${{outputs.out}}",
        "task_type": "run_function",
    } | extra
    append = f"\n      append_row_to: {fields['append_row_to']}" if fields["append_row_to"] else ""
    path = tmp_path / "p.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            type: pipeline
            jobs:
              each:
                type: parallel
                inputs: {{data: {{type: uri_folder, path: ./data}}}}
                outputs: {{out: {{type: uri_folder}}}}
                input_data: {fields["input_data"]}
                mini_batch_size: {fields["mini_batch_size"]}
                task:
                  type: {fields["task_type"]}
                  code: ./src
                  entry_script: entry.py
                  environment: {{image: img}}"""
        )
        + append
        + "\n"
    )
    return path


def test_a_folder_is_split_into_mini_batches_of_files_and_a_short_return_fails_one(
    tmp_path: Path,
) -> None:
    converted = load(folder_job(tmp_path, keep="1"), {})
    spec = module(converted, "each/mini_batches")
    assert spec.array is not None and spec.array.glob is not None
    shards = arrays.expand(spec.array, {"data": str(tmp_path / "data")})
    assert [json.loads(s.value) for s in shards] == [
        ["a.txt", "b.txt"],
        ["boom.txt", "d e.txt"],
        ["sub/c.txt"],
    ]
    rows = tmp_path / "rows"
    rows.mkdir()
    texts = {"inputs.data": str(tmp_path / "data"), "outputs.aml_rows": str(rows)}
    got = [run_shard(spec, texts, s, tmp_path / "src") for s in shards]
    assert [g.returncode for g in got] == [1, 1, 0]
    assert "mini-batch 0: run() returned 1 results for 2 items" in got[0].stderr
    assert "RuntimeError: boom" in got[1].stderr  # run() raised: that mini-batch failed
    # init() ran before run(), once in each mini-batch's own process; run() got full paths.
    assert (rows / "000002.txt").read_text() == "['init']:c.txt\n"
    assert len((tmp_path / "src" / "inits.txt").read_text().splitlines()) == 3


def test_the_mini_batches_of_a_packed_batch_share_one_interpreter_and_init_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = module(load(folder_job(tmp_path), {}), "each/mini_batches")
    assert spec.array is not None
    rows = tmp_path / "rows"
    rows.mkdir()
    texts = {"inputs.data": str(tmp_path / "data"), "outputs.aml_rows": str(rows)}
    argvs = [
        placeholders.render_argv(
            spec.command, texts | {"shard.index": str(s.index), "shard.value": s.value}
        )
        for s in arrays.expand(spec.array, {"data": str(tmp_path / "data")})
    ]
    # What the packing planner asks: these values can run in one interpreter.
    assert pyvalues.shared([invocation(argv, env=dict(spec.env)) for argv in argvs])
    monkeypatch.chdir(tmp_path / "src")
    env = {**os.environ, **spec.env}
    logs = [(str(tmp_path / f"{i}.out"), str(tmp_path / f"{i}.err")) for i in range(3)]
    worker = pydriver.Worker(argvs[0], env, *logs[0])  # as the in-container driver starts it
    replies = []
    for argv, (out, err) in zip(argvs, logs, strict=True):
        assert worker.send({"argv": argv[3:], "env": env, "out": out, "err": err})
        replies.append(worker.reply(None))
    worker.close(1.0)
    assert replies == [(0, False), (1, False), (0, False)]  # run() raised in the second only
    assert "RuntimeError: boom" in Path(logs[1][1]).read_text()
    # One interpreter, one init() for the three mini-batches, the failed one included.
    assert len((tmp_path / "src" / "inits.txt").read_text().splitlines()) == 1
    assert (rows / "000000.txt").read_text() == "['init']:a.txt\n['init']:b.txt\n"
    assert (rows / "000002.txt").read_text() == "['init']:c.txt\n"


def test_summary_only_is_one_array_job_with_no_append(tmp_path: Path) -> None:
    converted = load(folder_job(tmp_path, append_row_to=""), {})
    assert list(converted.data["jobs"]) == ["each/mini_batches"]
    assert "aml_rows" not in module(converted, "each/mini_batches").outputs


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("mini_batch_size", "10kb", "jobs.each.mini_batch_size: expected a number of files"),
        ("input_data", "${{inputs.nope}}", "jobs.each.input_data: expected ${{inputs.NAME}}"),
        ("append_row_to", "${{outputs.nope}}", "task.append_row_to: expected ${{outputs.NAME}}"),
        ("task_type", "run_command", "task.type: only run_function tasks run here"),
        (
            "input_data",
            "${{inputs.data}}\n                partition_keys: [a]",
            "mltable partitions",
        ),
    ],
)
def test_what_a_parallel_job_cannot_run_here_is_named_where_it_is_written(
    tmp_path: Path, field: str, value: str, expected: str
) -> None:
    path = folder_job(tmp_path, **{field: value})
    with pytest.raises(PipelineError) as err:
        load(path, {})
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{path}:"), lines
    assert expected in lines[1]


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("sweep", "jobs.j.type: 'sweep' jobs do not run here"),
        ("automl", "jobs.j.type: 'automl' jobs do not run here"),
        ("spark", "jobs.j.type: 'spark' jobs do not run here"),
    ],
)
def test_job_types_that_do_not_run_here_are_refused_in_one_line(
    tmp_path: Path, kind: str, line: str
) -> None:
    path = tmp_path / "p.yml"
    path.write_text(f"type: pipeline\njobs:\n  j: {{type: {kind}, component: ./x.yml}}\n")
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    assert str(err.value).splitlines()[1] == (
        f"{path}:3:13: {line}; containerexec runs command, pipeline (a pipeline component) "
        "and parallel jobs"
    )


def test_a_data_asset_by_name_is_refused_where_a_job_binds_it(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(
        "type: pipeline\njobs:\n  j:\n    command: ls ${{inputs.d}}\n"
        "    environment: {image: img}\n"
        "    inputs: {d: {type: uri_folder, path: 'azureml:corpus:3'}}\n"
    )
    with pytest.raises(PipelineError) as err:
        load_pipeline(path, {})
    assert str(err.value).splitlines()[1] == (
        f"{path}:6:17: jobs.j.inputs.d: 'azureml:corpus:3' is data in Azure ML or the cloud, "
        "which a local run cannot read; bind the input to a pipeline input, "
        "${{parent.inputs.d}}, and give it a local path: -i d=PATH"
    )


def test_group_is_for_files_or_lines_only() -> None:
    data = {"name": "m", "environment": {"image": "i"}, "command": ["true"]}
    with pytest.raises(SpecError, match="'group' takes files or lines together"):
        validate_spec(data | {"array": {"values": [1, 2], "group": 2}}, "m")
