"""Pipeline runs replayed as a whole, moved from tests/engine/test_repro_pipeline.py: ids shared
by job runs are listed, and a job whose input is nowhere replays its upstream job first. Both
are ours (the store, repro's planning), so tests/fakes.FakeEngine plays the two commands.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakes import FakeEngine, Outcome
from helpers import BASE_IMAGE

from containerexec.cli import App, cli
from containerexec.model.invocation import Invocation
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


def source(inv: Invocation) -> Path:
    """The host file behind the input `src` (mounted as a file, or in its folder)."""
    [m] = [m for m in inv.mounts if m.name == "src"]
    path = Path(m.source)
    return path if path.is_file() else path / Path(inv.argv[3]).name


def commands(inv: Invocation, n: int) -> Outcome:
    """EMIT appends 'A' to its input; CHECK fails (exit 3) on an input holding 'A'."""
    text = source(inv).read_text()
    if inv.module == "emit":
        return Outcome(files={"out/out.txt": (text + "A").encode()})
    if "A" in text:
        return Outcome(exit_code=3, errors=f"bad input: {text}\n".encode(), files={})
    return Outcome(files={"out/out.txt": b""})


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(commands)


def cx(engine: FakeEngine, runs: Path, *args: str) -> Result:
    app = App(runs_dir=runs, engine_factory=lambda: engine, sleep=lambda s: None)
    return CliRunner().invoke(cli, ["--runs-dir", str(runs), *args], obj=app)


@pytest.fixture
def failed_pipeline(engine: FakeEngine, tmp_path: Path) -> tuple[RunStore, str]:
    for name, text in {"emit.yaml": EMIT, "check.yaml": CHECK, "p.yaml": PIPELINE}.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "seed.txt").write_text("seed")
    store = RunStore(tmp_path / "runs")
    result = Orchestrator(engine, store).run(
        check_pipeline(tmp_path / "p.yaml"), {"seed": str(tmp_path / "seed.txt")}, {}
    )
    assert result.failed == ["check"], result.record
    return store, result.record.id


def test_an_id_shared_by_job_runs_lists_them_and_names_the_pipeline_run(
    engine: FakeEngine, failed_pipeline: tuple[RunStore, str]
) -> None:
    store, pid = failed_pipeline
    shown = cx(engine, store.root, "runs", "show", pid)
    assert shown.exit_code != 0
    assert f"matches 2 runs: {pid}.check, {pid}.make" in shown.stderr
    assert f"for the whole pipeline run give '{pid}'" in shown.stderr


def test_without_the_upstream_output_the_upstream_job_is_replayed_first(
    engine: FakeEngine, failed_pipeline: tuple[RunStore, str]
) -> None:
    store, pid = failed_pipeline
    shutil.rmtree(store.pipeline_dir(pid) / "jobs")
    result = cx(engine, store.root, "repro", pid, "--job", "check")

    assert result.exit_code == 3, result.output
    assert (
        "replaying upstream job 'make' shard 0 first: the output job 'check' reads is not here"
        in result.stderr
    )
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    pipeline_json = store.pipeline_dir(pid) / "pipeline.json"
    by_file = cx(engine, store.root, "repro", str(pipeline_json), "--job", "make")
    assert by_file.exit_code == 2 and "has no failed shard" in by_file.stderr, by_file.output
