"""Pipeline runs exported and replayed as a whole on the real engine: a job that failed on
another job's output replays from a bundle that carries that output, or by replaying the
upstream job first when the output is nowhere; ids shared by job runs are listed."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import BASE_IMAGE

from containerexec.cli import App, cli
from containerexec.engine.docker import DockerEngine
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.store.tree import RunStore

IMAGE = f"environment: {{image: '{BASE_IMAGE}', pull: never}}"
EMIT = f"""\
name: emit
{IMAGE}
inputs: {{src: {{type: file}}}}
outputs: {{out: {{type: file, path: out.txt}}}}
command: [python3, -c, "import sys; open(sys.argv[2], 'w').write(open(sys.argv[1]).read() + 'A')",
          "${{{{inputs.src}}}}", "${{{{outputs.out}}}}"]
"""
CHECK = f"""\
name: check
{IMAGE}
inputs: {{src: {{type: file}}}}
outputs: {{out: {{type: file, path: out.txt}}}}
command: [python3, -c, "import sys; t = open(sys.argv[1]).read();
          print('bad input: ' + t, file=sys.stderr) if 'A' in t else None;
          sys.exit(3 if 'A' in t else 0)", "${{{{inputs.src}}}}", "${{{{outputs.out}}}}"]
"""
PIPELINE = """\
name: cx-twostep
inputs: {seed: {type: file}}
jobs:
  make: {module: emit.yaml, inputs: {src: "${{inputs.seed}}"}}
  check: {module: check.yaml, inputs: {src: "${{jobs.make.outputs.out}}"}}
"""


def cx(runs: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--runs-dir", str(runs), *args], obj=App(runs_dir=runs, sleep=lambda s: None)
    )


@pytest.fixture
def failed_pipeline(
    engine: DockerEngine, test_session_label: dict[str, str], tmp_path: Path
) -> tuple[RunStore, str]:
    for name, text in {"emit.yaml": EMIT, "check.yaml": CHECK, "p.yaml": PIPELINE}.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "seed.txt").write_text("seed")
    store = RunStore(tmp_path / "runs")
    result = Orchestrator(engine, store, labels=test_session_label).run(
        check_pipeline(tmp_path / "p.yaml"), {"seed": str(tmp_path / "seed.txt")}, {}
    )
    assert result.failed == ["check"], result.record
    return store, result.record.id


def test_an_id_shared_by_job_runs_lists_them_and_names_the_pipeline_run(
    failed_pipeline: tuple[RunStore, str],
) -> None:
    store, pid = failed_pipeline
    shown = cx(store.root, "runs", "show", pid)
    assert shown.exit_code != 0
    assert f"matches 2 runs: {pid}.check, {pid}.make" in shown.stderr
    assert f"for the whole pipeline run give '{pid}'" in shown.stderr


def test_a_pipeline_bundle_carries_the_upstream_output_and_replays_the_failed_job(
    failed_pipeline: tuple[RunStore, str], tmp_path: Path
) -> None:
    store, pid = failed_pipeline
    bundle = tmp_path / "pipeline.tar"
    made = cx(store.root, "runs", "export", pid, "--bundle", str(bundle), "--with-inputs")
    assert made.exit_code == 0, made.output
    assert "2 run(s)" in made.stderr and "input src (made by job make)" in made.stderr
    with tarfile.open(bundle) as tar:
        assert {"pipeline.json", f"runs/{pid}.make.json", "inputs/src"} <= set(tar.getnames())
    shutil.rmtree(store.pipeline_dir(pid) / "jobs")  # the upstream output is nowhere now

    shown = cx(tmp_path / "laptop", "runs", "show", str(bundle))
    assert "job check" in shown.stdout and "bad input: seedA" in shown.stdout, shown.output
    result = cx(tmp_path / "laptop", "repro", str(bundle))

    assert result.exit_code == 3, result.output
    assert f"job 'check' of pipeline run {pid}" in result.stderr
    assert "inputs src from the bundle" in result.stderr
    assert "replaying upstream" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"


def test_without_the_upstream_output_the_upstream_job_is_replayed_first(
    failed_pipeline: tuple[RunStore, str],
) -> None:
    store, pid = failed_pipeline
    shutil.rmtree(store.pipeline_dir(pid) / "jobs")
    result = cx(store.root, "repro", pid, "--job", "check")

    assert result.exit_code == 3, result.output
    assert (
        "replaying upstream job 'make' shard 0 first: the output job 'check' reads is not here"
        in result.stderr
    )
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    pipeline_json = store.pipeline_dir(pid) / "pipeline.json"
    by_file = cx(store.root, "repro", str(pipeline_json), "--job", "make")
    assert by_file.exit_code == 2 and "has no failed shard" in by_file.stderr, by_file.output
