"""Pipeline runs exported and replayed as a whole on the real engine: a job that failed on
another job's output replays from a bundle that carries that output. Replaying the upstream
job first and ids shared by job runs are unit tests: tests/unit/test_repro_pipeline_fake.py."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from containerexec.cli import App, cli
from containerexec.engine.docker import DockerEngine
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.store.tree import RunStore
from tests.unit.test_repro_pipeline_fake import CHECK, EMIT, PIPELINE


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
