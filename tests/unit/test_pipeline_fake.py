"""Pipelines, moved from tests/engine/test_pipeline.py: parallel jobs, the cache, failures,
--keep-going and cancellation are DAG rules, so tests/fakes.FakeEngine plays the jobs'
commands (commands() below reads their inputs and writes their outputs as they would).

The example pipeline, run from the CLI on its real images, stays an engine test.
"""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, Outcome
from helpers import BASE_IMAGE, wait_for

from containerexec.cli.status import pipeline_status
from containerexec.labels import LABEL_PIPELINE_RUN
from containerexec.model.invocation import Invocation
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.store.tree import RunStore

IMAGE = f"environment: {{image: '{BASE_IMAGE}', pull: never}}"
# emit: sleep, then write the input file's text plus a tag (the tiniest useful job).
EMIT = f"""\
name: emit
{IMAGE}
inputs:
  src: {{type: file}}
  tag: {{type: string, default: ""}}
  pause: {{type: number, default: 0}}
outputs: {{out: {{type: file, path: out.txt}}}}
command: [python3, -c, "import sys,time; time.sleep(float(sys.argv[3])); t=open(sys.argv[1]).read();
          open(sys.argv[2],'w').write(t+sys.argv[4])",
          "${{{{inputs.src}}}}", "${{{{outputs.out}}}}", "${{{{inputs.pause}}}}",
          "${{{{inputs.tag}}}}"]
"""
JOIN = f"""\
name: join
{IMAGE}
inputs: {{left: {{type: file}}, right: {{type: file}}, extra: {{type: file}}}}
outputs: {{out: {{type: file, path: joined.txt}}}}
command: [python3, -c, "import sys; open(sys.argv[4],'w').write('|'.join(open(p).read()
          for p in sys.argv[1:4]))", "${{{{inputs.left}}}}", "${{{{inputs.right}}}}",
          "${{{{inputs.extra}}}}", "${{{{outputs.out}}}}"]
"""
FAIL = f"""\
name: fail
{IMAGE}
inputs: {{src: {{type: file}}}}
outputs: {{out: {{type: file, path: out.txt}}}}
command: [python3, -c, "import sys; print('no good', file=sys.stderr); sys.exit(3)",
          "${{{{inputs.src}}}}", "${{{{outputs.out}}}}"]
"""
DIAMOND = """\
name: diamond
inputs: {seed: {type: file}, extra: {type: file}, pause: {type: number, default: 0}}
outputs: {result: "${{jobs.d.outputs.out}}"}
jobs:
  a: {module: emit.yaml, inputs: {src: "${{inputs.seed}}", tag: A}}
  b: {module: emit.yaml, inputs: {src: "${{jobs.a.outputs.out}}", tag: B,
                                  pause: "${{inputs.pause}}"}}
  c: {module: emit.yaml, inputs: {src: "${{jobs.a.outputs.out}}", tag: C,
                                  pause: "${{inputs.pause}}"}}
  d: {module: join.yaml, inputs: {left: "${{jobs.b.outputs.out}}",
                                  right: "${{jobs.c.outputs.out}}", extra: "${{inputs.extra}}"}}
"""
BROKEN = """\
name: broken
inputs: {seed: {type: file}}
jobs:
  bad: {module: fail.yaml, inputs: {src: "${{inputs.seed}}"}}
  other: {module: emit.yaml, inputs: {src: "${{inputs.seed}}", tag: O}}
  after_bad: {module: emit.yaml, inputs: {src: "${{jobs.bad.outputs.out}}"}}
  after_other: {module: emit.yaml, inputs: {src: "${{jobs.other.outputs.out}}", tag: P}}
"""


def mounted(inv: Invocation, name: str) -> Path:
    """The host file behind input `name` (a file input mounts its file, or its folder)."""
    [m] = [m for m in inv.mounts if m.name == name]
    source = Path(m.source)
    if source.is_dir():
        [arg] = [a for a in inv.argv if a.startswith(m.target + "/") or a == m.target]
        return source / Path(arg).name if arg != m.target else source
    return source


def commands(inv: Invocation, n: int) -> Outcome:
    """What EMIT, JOIN and FAIL do, played by the fake engine."""
    if inv.module == "emit":
        _, _, _, _, _, pause, tag = inv.argv
        text = mounted(inv, "src").read_text() + tag
        return Outcome(seconds=float(pause), files={"out/out.txt": text.encode()})
    if inv.module == "join":
        text = "|".join(mounted(inv, k).read_text() for k in ("left", "right", "extra"))
        return Outcome(files={"out/joined.txt": text.encode()})
    assert inv.module == "fail", inv.module
    return Outcome(exit_code=3, output=b"no good\n", files={})


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(commands)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name, text in {
        "emit.yaml": EMIT,
        "join.yaml": JOIN,
        "fail.yaml": FAIL,
        "diamond.yaml": DIAMOND,
        "broken.yaml": BROKEN,
    }.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "seed.txt").write_text("seed")
    (tmp_path / "extra.txt").write_text("extra")
    return tmp_path


def orchestrator(engine: FakeEngine, workdir: Path, **options: Any) -> Orchestrator:
    return Orchestrator(engine, RunStore(workdir / "runs"), grace_s=1, **options)


def inputs_of(workdir: Path, pipeline: str, pause: float = 0) -> dict[str, str]:
    inputs = {"seed": str(workdir / "seed.txt")}
    if pipeline == "diamond.yaml":
        inputs |= {"extra": str(workdir / "extra.txt"), "pause": str(pause)}
    return inputs


def run(
    engine: FakeEngine,
    workdir: Path,
    pipeline: str,
    outputs: dict[str, str] | None = None,
    *,
    pause: float = 0,
    **options: Any,
) -> PipelineResult:
    orch = orchestrator(engine, workdir, **options)
    plan = check_pipeline(workdir / pipeline)
    return orch.run(plan, inputs_of(workdir, pipeline, pause), outputs or {})


def containers_started(workdir: Path, result: PipelineResult) -> dict[str, int]:
    """Per job: how many containers its run created (cached shards create none)."""
    store = RunStore(workdir / "runs")
    return {
        name: sum(len(s.attempts) for s in store.load_shards(job.run_id).values())
        for name, job in result.record.jobs.items()
        if job.run_id
    }


def test_diamond_runs_its_two_middle_jobs_in_parallel(engine: FakeEngine, workdir: Path) -> None:
    result = run(
        engine,
        workdir,
        "diamond.yaml",
        {"result": str(workdir / "result.txt")},
        pause=2,
        max_containers=4,
    )
    assert pipeline_status(result.record) == 0, result.record.jobs
    assert (workdir / "result.txt").read_text() == "seedAB|seedAC|extra"
    spans = {}
    for name in ("a", "b", "c", "d"):
        shard = RunStore(workdir / "runs").load_shards(result.record.jobs[name].run_id)[0]
        spans[name] = (shard.attempts[0].started_at, shard.attempts[-1].ended_at)
    assert spans["b"][0] < spans["c"][1] and spans["c"][0] < spans["b"][1]  # b and c overlap
    assert spans["a"][1] <= min(spans["b"][0], spans["c"][0])
    assert spans["d"][0] >= max(spans["b"][1], spans["c"][1])
    overlap = min(spans["b"][1], spans["c"][1]) - max(spans["b"][0], spans["c"][0])
    assert overlap > 0.5 * (spans["b"][1] - spans["b"][0])


def test_rerun_without_change_starts_no_container(engine: FakeEngine, workdir: Path) -> None:
    first = run(engine, workdir, "diamond.yaml")
    assert pipeline_status(first.record) == 0
    assert containers_started(workdir, first) == {"a": 1, "b": 1, "c": 1, "d": 1}
    second = run(engine, workdir, "diamond.yaml", {"result": str(workdir / "again.txt")})
    assert pipeline_status(second.record) == 0
    assert containers_started(workdir, second) == {"a": 0, "b": 0, "c": 0, "d": 0}
    assert all(j.cached for j in second.record.jobs.values())
    assert (workdir / "again.txt").read_text() == "seedAB|seedAC|extra"


def test_changing_one_input_byte_reruns_only_the_jobs_downstream_of_it(
    engine: FakeEngine, workdir: Path
) -> None:
    assert pipeline_status(run(engine, workdir, "diamond.yaml").record) == 0
    (workdir / "extra.txt").write_text("extrb")
    result = run(engine, workdir, "diamond.yaml", {"result": str(workdir / "result.txt")})
    assert containers_started(workdir, result) == {"a": 0, "b": 0, "c": 0, "d": 1}
    assert (workdir / "result.txt").read_text() == "seedAB|seedAC|extrb"
    (workdir / "seed.txt").write_text("seee")
    result = run(engine, workdir, "diamond.yaml")
    assert containers_started(workdir, result) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_no_cache_runs_every_job_again(engine: FakeEngine, workdir: Path) -> None:
    assert pipeline_status(run(engine, workdir, "diamond.yaml").record) == 0
    again = run(engine, workdir, "diamond.yaml", cache=False)
    assert containers_started(workdir, again) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert not any(j.cached for j in again.record.jobs.values())


def test_failed_job_stops_new_jobs_and_keep_going_runs_the_rest(
    engine: FakeEngine, workdir: Path
) -> None:
    stop = run(engine, workdir, "broken.yaml", max_workers=1)
    states = {n: j.state for n, j in stop.record.jobs.items()}
    assert states == {
        "bad": "failed",
        "other": "skipped",
        "after_bad": "skipped",
        "after_other": "skipped",
    }
    assert pipeline_status(stop.record) == 1 and stop.record.state == "failed"
    assert "not started: job 'bad' failed" in stop.record.jobs["other"].message
    going = run(engine, workdir, "broken.yaml", max_workers=1, keep_going=True)
    states = {n: j.state for n, j in going.record.jobs.items()}
    assert states == {
        "bad": "failed",
        "other": "succeeded",
        "after_bad": "skipped",
        "after_other": "succeeded",
    }
    assert pipeline_status(going.record) == 1


def test_cancel_stops_every_container_and_starts_no_new_job(
    engine: FakeEngine, workdir: Path
) -> None:
    plan = check_pipeline(workdir / "diamond.yaml")
    orch = orchestrator(engine, workdir)
    done: list[PipelineResult] = []
    inputs = inputs_of(workdir, "diamond.yaml", pause=60)
    worker = threading.Thread(target=lambda: done.append(orch.run(plan, inputs, {})))

    def both_middle_jobs_run() -> bool:
        if not hasattr(orch, "record"):
            return False
        running = [j for j in ("b", "c") if orch.record.jobs[j].state == "running"]
        return len(running) == 2 and bool(engine.containers({LABEL_PIPELINE_RUN: orch.record.id}))

    worker.start()
    try:
        wait_for(both_middle_jobs_run, timeout_s=60, what="jobs b and c to run in containers")
    except AssertionError:
        orch.cancel(signal.SIGTERM)  # leave no container behind this failure
        worker.join(timeout=60)
        raise
    started = time.monotonic()
    orch.cancel(signal.SIGTERM)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert time.monotonic() - started < 30  # not the 60 s the jobs would sleep
    result = done[0]
    assert (
        pipeline_status(result.record) == 128 + signal.SIGTERM
        and result.record.state == "cancelled"
    )
    assert {result.record.jobs[j].state for j in ("b", "c", "d")} == {"cancelled"}
    assert engine.containers({LABEL_PIPELINE_RUN: result.record.id}) == []
