"""Azure ML components and pipelines run as they are, in real containers: hostile values
arrive literally, optional segments come and go, records pin the image, the cache serves
a pipeline's second run, a failed component run reproduces, and conversions round-trip."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import BASE_IMAGE

from containerexec.cli import App, cli
from containerexec.store.tree import RunStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "specs" / "azureml"
IMAGES = ["--image-map", str(EXAMPLES / "images.yaml")]
HOSTILE = (
    "; touch /outputs/o/pwned1 # $(touch /outputs/o/pwned2) `touch /outputs/o/pwned3` "
    "\"q\" 'q'\nline2"
)
ARGS_COMPONENT = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: args
inputs:
  a: {{type: string}}
  b: {{type: string, optional: true}}
outputs:
  o: {{type: uri_folder}}
environment: {{image: {BASE_IMAGE}}}
command: >-
  python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))'
  ${{{{inputs.a}}}} "quoted ${{{{inputs.a}}}}" $[[--b ${{{{inputs.b}}}}]]
  > ${{{{outputs.o}}}}/argv.json
"""


def cx(runs: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--runs-dir", str(runs), *args], obj=App(runs_dir=runs, sleep=lambda s: None)
    )


def test_hostile_values_arrive_as_literal_arguments_and_run_nothing(tmp_path: Path) -> None:
    comp = tmp_path / "args.yml"
    comp.write_text(ARGS_COMPONENT)
    out = tmp_path / "out"
    result = cx(
        tmp_path / "runs", "run", str(comp), "-i", f"a={HOSTILE}", "-i", "b=$(id)", "-o", f"o={out}"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "argv.json").read_text()) == [
        HOSTILE,
        f"quoted {HOSTILE}",
        "--b",
        "$(id)",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["argv.json"]  # no pwned file


def test_an_optional_segment_is_dropped_when_its_input_is_not_given(tmp_path: Path) -> None:
    comp = tmp_path / "args.yml"
    comp.write_text(ARGS_COMPONENT)
    out = tmp_path / "out"
    result = cx(tmp_path / "runs", "run", str(comp), "-i", "a=x y", "-o", f"o={out}")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "argv.json").read_text()) == ["x y", "quoted x y"]


def test_the_example_component_runs_with_its_code_folder_read_only_and_a_pinned_image(
    tmp_path: Path,
) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    data = EXAMPLES / "data"
    result = cx(
        runs, "run", str(EXAMPLES / "count.yml"), *IMAGES, "-i", f"corpus={data / 'corpus'}",
        "-i", f"stopwords={data / 'stopwords.txt'}", "-i", "label=the $(label)",
        "-o", f"counts={out}", "-o", f"total={tmp_path / 'total.tsv'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ignored here (a local run cannot honour them): distribution" in result.stderr
    assert (out / "a.tsv").read_text() == "cat\t1\nend\t1\nmat\t1\non\t1\nsat\t1\n"
    assert (tmp_path / "total.tsv").read_text() == "the $(label)\t11\n"
    store = RunStore(runs)
    record = store.load_run("last")
    assert record.image.pinned.startswith("sha256:") or "@sha256:" in record.image.pinned
    assert "aml_code" in record.input_manifests  # the code is part of what was run
    [shard] = store.load_shards(record.run_id).values()
    inv = shard.invocation
    code = next(m for m in inv.mounts if m.name == "aml_code")
    assert (code.source, code.read_only, inv.workdir) == (
        str(EXAMPLES / "src"),
        True,
        "/inputs/aml_code",
    )
    assert inv.network is False


def test_a_failed_component_run_reproduces(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    data = EXAMPLES / "data"
    failed = cx(
        runs, "run", str(EXAMPLES / "count.yml"), *IMAGES,
        "-i", f"corpus={data / 'corpus'}", "-i", "note=fail",
    )  # fmt: skip
    assert failed.exit_code == 3, failed.output
    exported = cx(runs, "runs", "export", "last", "-o", str(tmp_path / "failed.json"))
    assert exported.exit_code == 0, exported.output
    replay = cx(tmp_path / "elsewhere", "repro", str(tmp_path / "failed.json"))
    assert replay.exit_code == 3, replay.output
    assert replay.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    assert "note: 'fail'" in replay.output


def test_the_example_pipeline_runs_and_its_second_run_comes_from_the_cache(
    tmp_path: Path,
) -> None:
    runs, report = tmp_path / "runs", tmp_path / "report.txt"
    args = [
        "pipeline",
        "run",
        str(EXAMPLES / "pipeline.yml"),
        *IMAGES,
        "-o",
        f"final_report={report}",
    ]
    first = cx(runs, *args)
    assert first.exit_code == 0, first.output
    assert report.read_text() == "bird\t1\ncat\t1\n"
    assert first.stderr.count("ignored here") == 1
    # The report job's conda pip dependency (pyyaml) is installed: its command imports it.
    report_runs = list((runs / "runs").glob("*.report_job/run.json"))
    assert report_runs and all(
        json.loads(p.read_text())["image"]["lock_sha256"] for p in report_runs
    )
    # The same command again, to the same -o place (issue 25 item 6): it replaces the
    # report the first run delivered, and the cache serves every job: no container.
    second = cx(runs, *args)
    assert second.exit_code == 0, second.output
    assert report.read_text() == "bird\t1\ncat\t1\n"
    # The second run's record: ids sort by second only, and both runs may share one.
    records = [json.loads(p.read_text()) for p in (runs / "pipelines").glob("*/pipeline.json")]
    latest = max(records, key=lambda r: r["started_at"])
    jobs = latest["jobs"]
    assert {name: job["shards_cached"] for name, job in jobs.items()} == {
        "count_job": 1,
        "report_job": 1,
        "shout_job": 1,
    }
    assert latest["outputs_placed"] == ["final_report"]
    store = RunStore(runs)
    assert not any(
        s.attempts for j in jobs.values() for s in store.load_shards(j["run_id"]).values()
    )


def test_conversions_round_trip_to_the_same_outputs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    data = EXAMPLES / "data"
    ours = tmp_path / "ours" / "count.yaml"
    converted = cx(runs, "spec", "convert", str(EXAMPLES / "count.yml"), *IMAGES, "-o", str(ours))
    assert converted.exit_code == 0, converted.output
    back = tmp_path / "back" / "count.yml"
    again = cx(runs, "spec", "convert", str(ours), "--to", "aml", "-o", str(back))
    assert again.exit_code == 0, again.output
    outputs = {}
    for name, spec in {"aml": EXAMPLES / "count.yml", "ours": ours, "back": back}.items():
        out = tmp_path / f"out-{name}"
        result = cx(
            runs, "run", str(spec), *IMAGES, "-i", f"corpus={data / 'corpus'}",
            "-i", "label=$(id) 'x'", "-o", f"counts={out}", "-o", f"total={out}.total",
        )  # fmt: skip
        assert result.exit_code == 0, (name, result.output)
        outputs[name] = (
            sorted((p.name, p.read_text()) for p in out.iterdir()),
            Path(f"{out}.total").read_text(),
        )
    assert outputs["aml"] == outputs["ours"] == outputs["back"]
    assert outputs["aml"][1] == "$(id) 'x'\t16\n"


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml's own deprecation warnings (marshmallow)
def test_a_component_converted_back_loads_with_azure_ai_ml(tmp_path: Path) -> None:
    from azure.ai.ml import load_component

    ours, back = tmp_path / "count.yaml", tmp_path / "back" / "count.yml"
    assert (
        cx(
            tmp_path, "spec", "convert", str(EXAMPLES / "count.yml"), *IMAGES, "-o", str(ours)
        ).exit_code
        == 0
    )
    assert cx(tmp_path, "spec", "convert", str(ours), "--to", "aml", "-o", str(back)).exit_code == 0
    loaded = load_component(source=str(back))
    assert loaded.name == "count_words" and "aml_code" not in loaded.inputs
    assert (back.parent / str(loaded.code)).resolve() == EXAMPLES / "src"  # relative to the file
    assert textwrap.dedent(loaded.command).startswith("sh -c ")


def test_the_inline_example_runs_its_second_job_on_the_first_s_output(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "shouted"
    args = ["pipeline", "run", str(EXAMPLES / "inline.yml"), *IMAGES, "-o", f"shouted={out}"]
    first = cx(runs, *args, "-i", f"name={HOSTILE}")
    assert first.exit_code == 0, first.output
    assert (out / "loud.txt").read_text() == f"HELLO {HOSTILE.upper()}\n"
    assert sorted(p.name for p in out.iterdir()) == ["loud.txt"]  # no pwned file
    records = [json.loads(p.read_text()) for p in (runs / "pipelines").glob("*/pipeline.json")]
    assert set(records[0]["jobs"]) == {"hello_job", "shout_job"}
    # The environment was registered (azureml:text-tools@latest): mapped, and pinned.
    hello = RunStore(runs).load_run(next((runs / "runs").glob("*.hello_job")).name)
    assert "@sha256:" in hello.image.pinned or hello.image.pinned.startswith("sha256:")
