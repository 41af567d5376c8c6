"""The Orchestrator on a FakeEngine: cache hits across pipeline runs, placed outputs, the
pipeline record; and the fake's own outputs (what the scheduling tests stand on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_pipelines import BRANCHES, DIAMOND, IMAGE, Kit, StepClock, by_job, chain, job_of
from fakes import FakeEngine, Outcome, fake_output

from containerexec.errors import UsageError
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import load_spec
from containerexec.pipelines.orchestrator import run_pipeline
from containerexec.pipelines.record import PipelineRecord


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def ran(engine: FakeEngine) -> list[str]:
    """The jobs that created a container, sorted."""
    return sorted({job_of(inv) for inv in engine.created})


# -- the fake's outputs ------------------------------------------------------------------


def step_invocation(kit: Kit, shard: Shard) -> Invocation:
    return resolve(
        load_spec(kit.root / "step.yaml"),
        Bindings({"src": str(kit.seed)}, {"out": "/x"}),
        shard,
        run_id="r-1",
        image=IMAGE,
        staging=kit.root / "st",
        user="1:1",
    )


def test_the_fake_writes_one_file_per_output_named_after_its_shard(kit: Kit) -> None:
    assert list(fake_output(step_invocation(kit, Shard(2, "2", 3)))) == ["out/step-2.txt"]


def test_the_fakes_output_changes_with_its_inputs_content(kit: Kit) -> None:
    inv = step_invocation(kit, Shard(0, "", 1))
    before = fake_output(inv)
    assert fake_output(inv) == before  # deterministic
    (kit.seed / "a.txt").write_text("changed\n")
    assert fake_output(inv) != before


def test_a_file_output_is_written_where_the_argv_names_it(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(DIAMOND))
    d = next(inv for inv in engine.created if job_of(inv) == "d")
    assert d.argv[-1] == "/outputs/out/joined.txt"
    assert result.record.jobs["d"].state == "succeeded"
    assert Path(result.record.jobs["d"].outputs["out"]).read_text().startswith("join shard 0 ")


def test_scripted_files_land_in_the_named_output(kit: Kit) -> None:
    engine = FakeEngine(by_job(a=Outcome(files={"out/deep/x.tsv": b"1\t2\n"})))
    result = kit.run(engine, kit.plan(chain("a")))
    out = Path(result.record.jobs["a"].outputs["out"])
    assert (out / "deep" / "x.tsv").read_bytes() == b"1\t2\n"
    assert [p.name for p in out.iterdir()] == ["deep"]


def test_a_missing_file_output_fails_the_job(kit: Kit) -> None:
    engine = FakeEngine(by_job(d=Outcome(files={})))
    result = kit.run(engine, kit.plan(DIAMOND))
    d = result.record.jobs["d"]
    assert d.state == "failed"
    shard = kit.store.load_shards(d.run_id or "")[0]
    assert "did not write joined.txt" in shard.message


def test_an_empty_directory_output_still_succeeds_and_exists(kit: Kit) -> None:
    engine = FakeEngine(by_job(a=Outcome(files={})))
    result = kit.run(engine, kit.plan(chain("a", "b")))
    out = Path(result.record.jobs["a"].outputs["out"])
    assert result.state == "succeeded"
    assert out.is_dir() and list(out.iterdir()) == []


# -- the cache ---------------------------------------------------------------------------


def test_a_second_run_of_an_unchanged_pipeline_starts_no_container(kit: Kit) -> None:
    plan = kit.plan(DIAMOND)
    kit.run(FakeEngine(), plan, cache=True)
    engine = FakeEngine()
    result = kit.run(engine, plan, cache=True)
    assert result.state == "succeeded"
    assert engine.created == []
    assert all(j.cached and j.shards == j.shards_cached == 1 for j in result.record.jobs.values())


def test_without_the_cache_every_job_runs_again(kit: Kit) -> None:
    plan = kit.plan(DIAMOND)
    kit.run(FakeEngine(), plan, cache=True)
    engine = FakeEngine()
    result = kit.run(engine, plan, cache=False)
    assert ran(engine) == ["a", "b", "c", "d"]
    assert not result.record.cache
    assert not any(j.cached for j in result.record.jobs.values())


def test_a_first_run_is_recorded_as_not_cached(kit: Kit) -> None:
    result = kit.run(FakeEngine(), kit.plan(chain("a", "b")), cache=True)
    assert result.record.cache
    assert {(j.cached, j.shards_cached) for j in result.record.jobs.values()} == {(False, 0)}


def test_two_alike_jobs_of_one_run_share_one_container_run(kit: Kit) -> None:
    engine = FakeEngine()
    result = kit.run(engine, kit.plan(DIAMOND), cache=True, max_workers=1)
    assert ran(engine) == ["a", "b", "d"]  # c: the same module on the same bytes as b
    assert result.record.jobs["c"].cached


def test_a_changed_input_file_reruns_only_the_jobs_downstream_of_it(kit: Kit) -> None:
    # the diamond, but c reads a second input instead of a's output
    dirs = "{type: directory}"
    text = DIAMOND.replace(f"{{seed: {dirs}}}", f"{{seed: {dirs}, other: {dirs}}}").replace(
        '{src: "${{jobs.a.outputs.out}}"}}\n  d:', '{src: "${{inputs.other}}"}}\n  d:'
    )
    assert text.count("inputs.other") == 1 and "other: {type" in text
    plan = kit.plan(text)
    kit.run(FakeEngine(), plan, cache=True)
    (kit.other / "b.txt").write_text("beta, changed\n")
    engine = FakeEngine()
    result = kit.run(engine, plan, cache=True)
    assert ran(engine) == ["c", "d"]
    assert {n: j.cached for n, j in result.record.jobs.items()} == {
        "a": True,
        "b": True,
        "c": False,
        "d": False,
    }


def test_a_rerun_upstream_that_writes_the_same_bytes_keeps_downstream_cached(kit: Kit) -> None:
    plan = kit.plan(chain("a", "b", "c"))
    same = by_job(a=Outcome(files={"out/fixed.txt": b"same\n"}))
    kit.run(FakeEngine(same), plan, cache=True)
    (kit.seed / "a.txt").write_text("alpha, changed\n")
    engine = FakeEngine(same)
    kit.run(engine, plan, cache=True)
    assert ran(engine) == ["a"]  # b and c read the same bytes: their keys did not change


def test_a_failed_job_is_not_cached_and_runs_again_with_its_downstream(kit: Kit) -> None:
    plan = kit.plan(chain("a", "b", "c"))
    kit.run(FakeEngine(by_job(b=Outcome(exit_code=1))), plan, cache=True)
    engine = FakeEngine()
    result = kit.run(engine, plan, cache=True)
    assert ran(engine) == ["b", "c"]
    assert result.record.jobs["a"].cached
    assert result.state == "succeeded"


def test_a_new_file_reruns_only_its_own_shard_of_a_glob_job(kit: Kit) -> None:
    (kit.seed / "c.txt").write_text("gamma\n")
    plan = kit.plan(chain("a", module="each.yaml"))
    kit.run(FakeEngine(), plan, cache=True)
    (kit.seed / "d.txt").write_text("delta\n")
    engine = FakeEngine()
    result = kit.run(engine, plan, cache=True)
    a = result.record.jobs["a"]
    assert (a.shards, a.shards_cached, a.cached) == (3, 2, False)
    assert [inv.shard_value for inv in engine.created] == ["d.txt"]


def test_cached_jobs_still_place_the_pipeline_outputs(kit: Kit, tmp_path: Path) -> None:
    plan = kit.plan(DIAMOND)
    kit.run(FakeEngine(), plan, cache=True)
    target = tmp_path / "result.txt"
    result = kit.run(FakeEngine(), plan, {"result": str(target)}, cache=True)
    assert result.record.outputs_placed == ["result"]
    assert target.read_text().startswith("join shard 0 ")


# -- placed outputs ----------------------------------------------------------------------


def test_an_output_is_placed_with_the_bytes_its_job_wrote(kit: Kit, tmp_path: Path) -> None:
    result = kit.run(FakeEngine(), kit.plan(DIAMOND), {"result": "placed.txt"})
    job_file = Path(result.record.jobs["d"].outputs["out"])
    assert (tmp_path / "placed.txt").read_bytes() == job_file.read_bytes()
    assert result.record.outputs == {"result": str(tmp_path / "placed.txt")}


def test_outputs_are_placed_only_for_succeeded_jobs(kit: Kit, tmp_path: Path) -> None:
    engine = FakeEngine(by_job(bad=Outcome(exit_code=1)))
    places = {"bad_out": str(tmp_path / "b"), "good_out": str(tmp_path / "g")}
    result = kit.run(engine, kit.plan(BRANCHES), places, keep_going=True)
    assert result.record.outputs_placed == ["good_out"]
    assert (tmp_path / "g").is_dir() and not (tmp_path / "b").exists()


def test_a_failed_jobs_partial_output_is_not_placed(kit: Kit, tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=1 if inv.shard_index == 1 else 0))
    result = kit.run(engine, kit.plan(chain("a", module="fan.yaml")), {"result": "r"})
    partial = Path(result.record.jobs["a"].outputs["out"])
    assert sorted(p.name for p in partial.iterdir()) == ["fan-0.txt", "fan-2.txt"]
    assert result.record.outputs_placed == []
    assert not (tmp_path / "r").exists()


def test_a_cancelled_pipeline_places_no_output(kit: Kit, tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    orch = kit.orchestrator(engine)
    engine.on_start = lambda inv: orch.cancel()
    result = kit.run(engine, kit.plan(DIAMOND), {"result": "r.txt"}, orchestrator=orch)
    assert result.record.outputs_placed == []
    assert not (tmp_path / "r.txt").exists()


def test_without_a_place_an_output_stays_in_its_job_folder(kit: Kit) -> None:
    result = kit.run(FakeEngine(), kit.plan(chain("a", "b")))
    where = kit.store.pipeline_dir(result.record.id) / "jobs" / "b" / "out"
    assert result.record.outputs == {"result": str(where)}
    assert result.record.outputs_placed == []
    assert [p.name for p in where.iterdir()] == ["step-0.txt"]


def test_a_non_empty_place_is_refused_before_any_container(kit: Kit, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old").write_text("keep me")
    engine = FakeEngine()
    with pytest.raises(UsageError, match="taken"):
        kit.run(engine, kit.plan(chain("a")), {"result": "taken"})
    assert engine.created == []
    assert (tmp_path / "taken" / "old").read_text() == "keep me"


def test_overwrite_replaces_a_non_empty_place(kit: Kit, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old").write_text("old")
    result = kit.run(FakeEngine(), kit.plan(chain("a")), {"result": "taken"}, overwrite=True)
    assert result.record.outputs_placed == ["result"]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["step-0.txt"]


def test_two_outputs_in_one_place_are_refused(kit: Kit, tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(UsageError, match="would be written to the same place"):
        kit.run(engine, kit.plan(BRANCHES), {"bad_out": "x", "good_out": "x/y"})
    assert engine.created == []


def test_an_output_inside_an_input_is_refused(kit: Kit) -> None:
    engine = FakeEngine()
    with pytest.raises(UsageError, match="would overwrite input 'seed'"):
        kit.run(engine, kit.plan(chain("a")), {"result": "seed/out"})
    assert engine.created == []


def test_an_unknown_output_or_input_name_lists_the_known_ones(kit: Kit) -> None:
    plan = kit.plan(chain("a"))
    with pytest.raises(UsageError, match=r"-o 'nope': no such output \(outputs: result\)"):
        kit.run(FakeEngine(), plan, {"nope": "x"})
    with pytest.raises(UsageError, match=r"-i 'nope': no such input \(inputs: seed\)"):
        run_pipeline(FakeEngine(), kit.store, plan, kit.root, {"nope": "x"}, {})


# -- the pipeline record -----------------------------------------------------------------


def test_the_record_on_disk_is_the_record_returned(kit: Kit) -> None:
    result = kit.run(FakeEngine(by_job(c=Outcome(exit_code=1))), kit.plan(DIAMOND), keep_going=True)
    on_disk = PipelineRecord.model_validate(json.loads(result.record_path.read_text()))
    assert on_disk == result.record
    assert result.record_path == kit.store.pipeline_dir(result.record.id) / "pipeline.json"


def test_the_record_names_each_jobs_module_run_and_state(kit: Kit) -> None:
    result = kit.run(FakeEngine(by_job(c=Outcome(exit_code=1))), kit.plan(DIAMOND), keep_going=True)
    jobs = result.record.jobs
    pid = result.record.id
    assert {n: (j.module, j.state) for n, j in jobs.items()} == {
        "a": ("step", "succeeded"),
        "b": ("step", "succeeded"),
        "c": ("step", "failed"),
        "d": ("join", "skipped"),
    }
    assert [jobs[n].run_id for n in "abc"] == [f"{pid}.a", f"{pid}.b", f"{pid}.c"]
    assert jobs["d"].run_id is None and jobs["d"].started_at is None


def test_job_times_come_from_the_injected_clock_in_order(kit: Kit) -> None:
    clock = StepClock()
    start = clock.now
    result = kit.run(FakeEngine(), kit.plan(chain("a", "b")), clock=clock)
    rec = result.record
    a, b = rec.jobs["a"], rec.jobs["b"]
    assert a.started_at is not None and a.ended_at is not None
    assert b.started_at is not None and b.ended_at is not None and rec.ended_at is not None
    assert start < rec.started_at < a.started_at < a.ended_at <= b.started_at < b.ended_at
    assert b.ended_at < rec.ended_at <= clock.now


def test_the_record_keeps_the_run_settings(kit: Kit) -> None:
    result = kit.run(
        FakeEngine(), kit.plan(DIAMOND), max_workers=3, max_containers=5, keep_going=True
    )
    rec = result.record
    assert (rec.max_workers, rec.max_containers, rec.keep_going, rec.cache) == (3, 5, True, False)
    assert (rec.name, rec.state, rec.signal) == ("diamond", "succeeded", None)
    assert rec.inputs == {"seed": str(kit.seed)}
    assert rec.pipeline_path == str(kit.root / "p.yaml")


def test_an_array_job_records_its_shard_count_and_outputs(kit: Kit) -> None:
    result = kit.run(FakeEngine(), kit.plan(chain("a", module="fan.yaml")))
    a = result.record.jobs["a"]
    pid = result.record.id
    assert (a.state, a.shards, a.shards_cached, a.cached) == ("succeeded", 3, 0, False)
    assert a.outputs == {"out": str(kit.store.pipeline_dir(pid) / "jobs" / "a" / "out")}
    assert sorted(p.name for p in Path(a.outputs["out"]).iterdir()) == [
        "fan-0.txt",
        "fan-1.txt",
        "fan-2.txt",
    ]


def test_a_job_run_is_a_module_run_with_the_pipelines_label(kit: Kit) -> None:
    result = kit.run(FakeEngine(), kit.plan(chain("a")))
    run = kit.store.load_run(f"{result.record.id}.a")
    assert run.state == "succeeded"
    assert result.runs["a"].record.run_id == run.run_id
    labels = kit.store.load_shards(run.run_id)[0].invocation.labels
    assert labels["containerexec.pipeline-run"] == result.record.id


def test_the_run_id_starts_with_the_pipeline_name_and_the_clock_time(kit: Kit) -> None:
    result = kit.run(FakeEngine(), kit.plan(DIAMOND), clock=StepClock())
    assert result.record.id.startswith("diamond-20270115-")
