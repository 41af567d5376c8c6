"""The pipeline DAG rules on a FakeEngine: the ready set, worker and container limits, failure
propagation with and without keep_going, and cancel (tests/engine/test_pipeline.py runs a
few of them for real)."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fake_pipelines import (
    BRANCHES,
    DIAMOND,
    Gate,
    Kit,
    by_job,
    chain,
    first,
    independent,
    job_of,
    last,
    started_jobs,
)
from fakes import FakeEngine, Outcome

from containerexec.errors import ImageError
from containerexec.model.invocation import Invocation
from containerexec.model.spec import load_spec
from containerexec.pipelines.record import JobEvent


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


# -- the plan's graph (pure) -------------------------------------------------------------


def test_downstream_is_every_job_that_needs_a_job_directly_or_not(kit: Kit) -> None:
    plan = kit.plan(DIAMOND)
    assert plan.downstream("a") == {"b", "c", "d"}
    assert plan.downstream("b") == {"d"}
    assert plan.downstream("d") == set()


def test_needs_are_the_upstream_jobs_sorted_and_inputs_alone_need_nothing(kit: Kit) -> None:
    plan = kit.plan(DIAMOND)
    assert plan.jobs["a"].needs == ()
    assert plan.jobs["d"].needs == ("b", "c")


def test_the_plan_order_puts_every_job_after_the_jobs_it_needs(kit: Kit) -> None:
    plan = kit.plan(DIAMOND)
    for name, job in plan.jobs.items():
        assert all(plan.order.index(up) < plan.order.index(name) for up in job.needs)


# -- the ready set -----------------------------------------------------------------------


def test_a_chain_runs_each_job_after_the_one_it_needs_has_exited(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(chain("a", "b", "c")))
    assert result.state == "succeeded"
    assert started_jobs(engine) == ["a", "b", "c"]
    assert last(engine, "exit", "a") < first(engine, "start", "b")
    assert last(engine, "exit", "b") < first(engine, "start", "c")


def test_a_join_starts_only_when_both_of_its_upstream_jobs_have_exited(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(DIAMOND), max_workers=4)
    assert result.state == "succeeded"
    d = first(engine, "start", "d")
    assert last(engine, "exit", "b") < d and last(engine, "exit", "c") < d


def test_a_join_waits_for_a_slow_upstream_while_its_sibling_is_done(kit: Kit) -> None:
    c_done = threading.Event()
    engine = FakeEngine(by_job(b=Outcome(hold=c_done)))

    def on_event(e: JobEvent) -> None:
        if e.job == "c" and e.kind == "finished":
            c_done.set()

    result = kit.run(engine, kit.plan(DIAMOND), max_workers=4, on_event=on_event)
    assert result.state == "succeeded"
    assert last(engine, "exit", "c") < last(engine, "exit", "b") < first(engine, "start", "d")


def test_every_array_shard_of_an_upstream_job_exits_before_the_next_job_starts(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(chain("a", "b", module="fan.yaml")))
    assert result.state == "succeeded"
    assert last(engine, "exit", "a") < first(engine, "start", "b")
    starts = [(job_of(r), shard) for kind, r, shard in engine.events if kind == "start"]
    assert sorted(starts) == [(j, s) for j in "ab" for s in range(3)]


def test_a_job_reads_its_upstream_jobs_output_folder(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(DIAMOND))
    d = next(inv for inv in engine.created if job_of(inv) == "d")
    sources = {m.name: m.source for m in d.mounts if m.kind == "input"}
    jobs_dir = kit.store.pipeline_dir(result.record.id) / "jobs"
    assert sources == {"left": str(jobs_dir / "b" / "out"), "right": str(jobs_dir / "c" / "out")}


def test_independent_jobs_run_together(kit: Kit) -> None:
    engine = FakeEngine()
    gate = Gate(engine, 3)
    engine.script = lambda inv, n: gate.outcome()
    result = kit.run(engine, kit.plan(independent(3)), max_workers=3)
    gate.close()
    assert result.state == "succeeded"
    assert engine.max_running == 3


def test_no_more_jobs_run_at_once_than_max_workers(kit: Kit) -> None:
    engine = FakeEngine()
    gate = Gate(engine, 2)
    engine.script = lambda inv, n: gate.outcome()
    result = kit.run(engine, kit.plan(independent(5)), max_workers=2, max_containers=8)
    gate.close()
    assert result.state == "succeeded"
    assert engine.max_running == 2
    assert len(engine.created) == 5


def test_one_worker_runs_independent_jobs_one_at_a_time_in_the_order_written(kit: Kit) -> None:
    text = independent(4).replace("j0:", "zz:").replace("j3:", "aa:")
    engine = FakeEngine()
    kit.run(engine, kit.plan(text), max_workers=1)
    assert started_jobs(engine) == ["zz", "j1", "j2", "aa"]
    assert engine.max_running == 1


@pytest.mark.parametrize("max_containers", [2, 5])
def test_max_containers_bounds_the_containers_of_all_jobs_together(
    kit: Kit, max_containers: int
) -> None:
    engine = FakeEngine()
    gate = Gate(engine, max_containers)
    engine.script = lambda inv, n: gate.outcome()
    plan = kit.plan(independent(2, "fan.yaml"))  # 2 jobs of 3 shards, each up to 3 at once
    result = kit.run(engine, plan, max_workers=2, max_containers=max_containers)
    gate.close()
    assert result.state == "succeeded"
    assert engine.max_running == max_containers
    assert len(engine.created) == 6


def test_respec_sees_the_upstream_output_already_committed(kit: Kit) -> None:
    seen: dict[str, list[str]] = {}

    def respec(job: str, inputs: Mapping[str, Any]) -> None:
        seen[job] = sorted(p.name for p in Path(inputs["src"]).iterdir())

    result = kit.run(FakeEngine(), kit.plan(chain("a", "b")), respec=respec)
    assert result.state == "succeeded"
    assert seen == {"a": ["a.txt"], "b": ["step-0.txt"]}


def test_a_respec_made_spec_is_the_one_that_runs(kit: Kit) -> None:
    fan = load_spec(kit.root / "fan.yaml")
    engine = FakeEngine()
    result = kit.run(
        engine, kit.plan(chain("a", "b")), respec=lambda job, inputs: fan if job == "b" else None
    )
    assert result.record.jobs["b"].shards == 3
    assert {inv.module for inv in engine.created if job_of(inv) == "b"} == {"fan"}


def test_job_events_say_started_then_finished_for_each_job(kit: Kit) -> None:
    events: list[JobEvent] = []
    kit.run(FakeEngine(), kit.plan(chain("a", "b")), on_event=events.append)
    kinds = [(e.job, e.kind, e.state) for e in events if e.kind != "shard"]
    assert kinds == [
        ("a", "started", "running"),
        ("a", "finished", "succeeded"),
        ("b", "started", "running"),
        ("b", "finished", "succeeded"),
    ]
    assert {e.job for e in events if e.kind == "shard"} == {"a", "b"}


# -- failure propagation -----------------------------------------------------------------


def test_a_failed_job_skips_everything_downstream_and_says_why(kit: Kit) -> None:
    engine = FakeEngine(by_job(a=Outcome(exit_code=3)))
    result = kit.run(engine, kit.plan(chain("a", "b", "c")))
    jobs = result.record.jobs
    assert result.state == "failed"
    assert result.failed == ["a"]
    assert (jobs["b"].state, jobs["c"].state) == ("skipped", "skipped")
    assert jobs["b"].message == jobs["c"].message == "not started: job 'a' failed"
    assert started_jobs(engine) == ["a"]


def test_a_failed_job_records_its_exit_code_and_where_to_look(kit: Kit) -> None:
    engine = FakeEngine(by_job(a=Outcome(exit_code=3)))
    result = kit.run(engine, kit.plan(chain("a", "b")))
    a = result.record.jobs["a"]
    assert a.exit_code == 3
    assert a.message == f"1 shard(s) failed; containerexec runs show {a.run_id}"


def test_without_keep_going_no_new_job_starts_after_a_failure(kit: Kit) -> None:
    engine = FakeEngine(by_job(bad=Outcome(exit_code=1)))
    result = kit.run(engine, kit.plan(BRANCHES), max_workers=1)
    jobs = result.record.jobs
    assert started_jobs(engine) == ["bad"]
    assert {n: j.state for n, j in jobs.items()} == {
        "bad": "failed",
        "good": "skipped",
        "after_bad": "skipped",
        "after_good": "skipped",
    }
    assert jobs["good"].message == "not started: job 'bad' failed"


def test_with_keep_going_the_independent_branch_still_runs(kit: Kit) -> None:
    engine = FakeEngine(by_job(bad=Outcome(exit_code=1)))
    result = kit.run(engine, kit.plan(BRANCHES), max_workers=1, keep_going=True)
    states = {n: j.state for n, j in result.record.jobs.items()}
    assert states == {
        "bad": "failed",
        "good": "succeeded",
        "after_bad": "skipped",
        "after_good": "succeeded",
    }
    assert result.state == "failed"
    assert "after_bad" not in started_jobs(engine)


def test_with_keep_going_a_skip_reaches_every_job_downstream(kit: Kit) -> None:
    engine = FakeEngine(by_job(a=Outcome(exit_code=1)))
    result = kit.run(engine, kit.plan(chain("a", "b", "c", "d")), keep_going=True)
    jobs = result.record.jobs
    assert [jobs[n].state for n in "bcd"] == ["skipped"] * 3
    assert {jobs[n].message for n in "bcd"} == {"not started: job 'a' failed"}


def test_a_job_already_running_when_another_fails_runs_to_its_end(kit: Kit) -> None:
    release = threading.Event()

    def on_event(e: JobEvent) -> None:
        if e.job == "bad" and e.kind == "finished":
            release.set()

    engine = FakeEngine(by_job(bad=Outcome(exit_code=1), good=Outcome(hold=release)))
    result = kit.run(engine, kit.plan(BRANCHES), max_workers=2, on_event=on_event)
    assert result.record.jobs["good"].state == "succeeded"
    assert result.record.jobs["after_good"].state == "skipped"


def test_skipped_jobs_get_a_skipped_event_with_the_reason(kit: Kit) -> None:
    events: list[JobEvent] = []
    engine = FakeEngine(by_job(a=Outcome(exit_code=1)))
    kit.run(engine, kit.plan(chain("a", "b", "c")), on_event=events.append, keep_going=True)
    skipped = [(e.job, e.message) for e in events if e.kind == "skipped"]
    assert skipped == [("b", "not started: job 'a' failed"), ("c", "not started: job 'a' failed")]


def test_one_failed_shard_fails_the_job_and_skips_the_next(kit: Kit) -> None:
    def script(inv: Invocation, n: int) -> Outcome:
        return Outcome(exit_code=2 if inv.shard_index == 1 else 0)

    engine = FakeEngine(script)
    result = kit.run(engine, kit.plan(chain("a", "b", module="fan.yaml")))
    a = result.record.jobs["a"]
    assert (a.state, a.shards) == ("failed", 3)
    assert a.message.startswith("1 shard(s) failed")
    assert result.record.jobs["b"].state == "skipped"


def test_a_job_that_fails_before_any_container_fails_with_the_reason(kit: Kit) -> None:
    class NoImage(FakeEngine):
        def inspect_image(self, ref: str) -> None:
            self.image_lookups += 1

    engine = NoImage()
    result = kit.run(engine, kit.plan(chain("a", "b")))
    a = result.record.jobs["a"]
    assert a.state == "failed"
    assert "not on this engine" in a.message and "sha256:ffff" in a.message
    assert result.record.jobs["b"].state == "skipped"
    assert engine.created == []


def buggy_respec(job: str, inputs: object) -> None:
    """A respec hook with a bug for job 'bad': an error that is no job failure."""
    if job == "bad":
        raise RuntimeError("a bug, not a job failure")


def test_a_bug_in_a_job_cancels_the_others_and_is_raised(kit: Kit) -> None:
    release = threading.Event()
    engine = FakeEngine(by_job(good=Outcome(hold=release)))

    orch = kit.orchestrator(engine, max_workers=2, respec=buggy_respec)
    with pytest.raises(RuntimeError, match="a bug"):
        kit.run(engine, kit.plan(BRANCHES), orchestrator=orch)
    assert orch.signal == signal.SIGINT
    assert engine.containers_by_id == {}


def test_a_bug_in_a_job_leaves_a_pipeline_record_that_has_ended(kit: Kit) -> None:
    engine = FakeEngine()
    orch = kit.orchestrator(engine, max_workers=1, respec=buggy_respec)
    with pytest.raises(RuntimeError):
        kit.run(engine, kit.plan(BRANCHES), orchestrator=orch)
    on_disk = json.loads((orch.dir / "pipeline.json").read_text())
    assert on_disk["state"] in ("failed", "cancelled") and on_disk["ended_at"] is not None
    assert not {"running", "pending"} & {j["state"] for j in on_disk["jobs"].values()}


def test_the_job_that_raised_a_bug_names_it_and_the_rest_are_cancelled(kit: Kit) -> None:
    engine = FakeEngine()
    orch = kit.orchestrator(engine, max_workers=1, respec=buggy_respec)
    with pytest.raises(RuntimeError):
        kit.run(engine, kit.plan(BRANCHES), orchestrator=orch)
    jobs = json.loads((orch.dir / "pipeline.json").read_text())["jobs"]
    assert jobs["bad"]["state"] == "failed" and jobs["bad"]["ended_at"] is not None
    assert "RuntimeError: a bug, not a job failure" in jobs["bad"]["message"]
    never = [j for j in jobs.values() if j["started_at"] is None]
    assert never and all(j["state"] == "cancelled" for j in never)


def test_an_image_error_is_a_job_failure_not_a_crash(kit: Kit) -> None:
    def respec(job: str, inputs: object) -> None:
        if job == "bad":
            raise ImageError("step", "x", "gone")

    engine = FakeEngine()
    result = kit.run(engine, kit.plan(BRANCHES), respec=respec, keep_going=True)
    assert result.record.jobs["bad"].state == "failed"
    assert "gone" in result.record.jobs["bad"].message
    assert result.record.jobs["after_good"].state == "succeeded"


# -- cancel ------------------------------------------------------------------------------


def test_cancel_while_a_job_runs_stops_it_and_cancels_the_rest(kit: Kit) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine)
    engine.on_start = lambda inv: orch.cancel()
    result = kit.run(engine, kit.plan(chain("a", "b", "c")), orchestrator=orch)
    jobs = result.record.jobs
    assert result.state == "cancelled"
    assert result.record.signal == signal.SIGINT
    assert jobs["a"].state == "cancelled"
    assert (jobs["b"].state, jobs["b"].message) == ("cancelled", "cancelled before it started")
    assert jobs["c"].state == "cancelled"
    assert started_jobs(engine) == ["a"]
    assert engine.containers_by_id == {}


def test_a_job_cancelled_while_it_ran_says_it_was_cancelled(kit: Kit) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine)
    engine.on_start = lambda inv: orch.cancel()
    result = kit.run(engine, kit.plan(chain("a", "b")), orchestrator=orch)
    a = result.record.jobs["a"]
    assert a.state == "cancelled"
    assert "cancelled" in a.message and "0 shard(s) failed" not in a.message


def test_cancel_records_the_signal_that_asked_for_it(kit: Kit) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine)

    def twice(inv: Invocation) -> None:
        orch.cancel(signal.SIGTERM)
        orch.cancel(signal.SIGINT)

    engine.on_start = twice
    result = kit.run(engine, kit.plan(chain("a", "b")), orchestrator=orch)
    assert result.record.signal == signal.SIGTERM  # the first one


def test_cancel_stops_every_running_job(kit: Kit) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine, max_workers=3)

    def started(inv: Invocation) -> None:
        with engine.lock:
            all_running = engine.running >= 3
        if all_running:
            orch.cancel()

    engine.on_start = started
    result = kit.run(engine, kit.plan(independent(3)), orchestrator=orch)
    assert {j.state for j in result.record.jobs.values()} == {"cancelled"}
    assert engine.max_running == 3
    assert engine.containers_by_id == {}


def test_a_cancel_before_the_run_starts_no_container(kit: Kit) -> None:
    engine = FakeEngine()
    orch = kit.orchestrator(engine)
    orch.cancel()
    result = kit.run(engine, kit.plan(DIAMOND), orchestrator=orch)
    assert engine.created == []
    assert result.state == "cancelled"
    assert {j.message for j in result.record.jobs.values()} == {"cancelled before it started"}


def test_a_cancel_after_a_failure_still_reports_the_run_cancelled(kit: Kit) -> None:
    engine = FakeEngine(by_job(bad=Outcome(exit_code=1)))
    orch = kit.orchestrator(engine, max_workers=1, keep_going=True)

    def on_event(e: JobEvent) -> None:
        if e.job == "bad" and e.kind == "finished":
            orch.cancel()

    orch.on_event = on_event
    result = kit.run(engine, kit.plan(BRANCHES), orchestrator=orch)
    assert result.state == "cancelled"
    assert result.record.jobs["bad"].state == "failed"
    assert result.record.jobs["good"].state == "cancelled"
    assert started_jobs(engine) == ["bad"]


def test_a_cancel_inside_an_array_job_starts_none_of_its_later_shards(kit: Kit) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine, max_containers=1)
    engine.on_start = lambda inv: orch.cancel()
    result = kit.run(engine, kit.plan(chain("a", "b", module="fan.yaml")), orchestrator=orch)
    # one slot: whichever shard took it is the only container; the other two never start
    assert [job_of(inv) for inv in engine.created] == ["a"]
    assert result.record.jobs["a"].state == "cancelled"
    assert result.record.jobs["b"].state == "cancelled"
