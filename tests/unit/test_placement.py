"""The placement seam: the registry, the open SchedulerRecord kind, and the generic array
follower against a cluster that is not Slurm (tests/fake_cluster.py), so a later backend
(Kubernetes) gets the same bookkeeping by implementing ArrayBackend only.
test_slurm_pure.py drives the same follower through Slurm's own states.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import fake_cluster
import pytest
from click.testing import CliRunner
from fake_cluster import (
    DEADLINE,
    DELETED,
    EVICTED,
    FAILED,
    OOM,
    PENDING,
    PREEMPTED,
    RUNNING,
    SUCCEEDED,
    FakeCluster,
    Step,
)
from fakes import FakeEngine
from pydantic import ValidationError

from containerexec.cli import cli
from containerexec.cli.app import App
from containerexec.cli.slurm import make_scheduler
from containerexec.errors import UsageError
from containerexec.model.spec import ModuleSpec, parse_spec
from containerexec.run import placement
from containerexec.run.executor import Executor
from containerexec.run.placement.base import (
    REGISTRY,
    Detached,
    JobStillActive,
    PlacementError,
    TaskState,
    Where,
)
from containerexec.run.placement.cluster import ArrayPlacement
from containerexec.run.placement.local import LocalPool
from containerexec.run.placement.slurm import SlurmBackend
from containerexec.run.results import RunResult
from containerexec.store.records import RunRecord, SchedulerRecord, ShardRecord
from containerexec.store.tree import RunStore

IMAGE = "reg.example/x@sha256:" + "a" * 64


def module(values: int = 1, retries: str = "{}", extra: str = "") -> ModuleSpec:
    text = (
        f"name: fake\nenvironment: {{image: '{IMAGE}'}}\n"
        "outputs: {out: {type: directory}}\ncommand: ['true']\n"
        f"array: {{values: {list(range(values))}{extra}}}\nretries: {retries}\n"
    )
    return parse_spec(text, "fake.yaml")


def cluster_run(
    tmp_path: Path,
    jobs: Sequence[Sequence[Step]],
    *,
    values: int = 1,
    retries: str = "{}",
    extra: str = "",
    detach: bool = False,
    max_tasks: int = 100,
) -> tuple[RunResult, FakeCluster, dict[int, ShardRecord]]:
    store = RunStore(tmp_path / "runs")
    fake = FakeCluster(store, jobs, max_tasks=max_tasks)
    where = ArrayPlacement(fake, sleep=lambda s: None, detach=detach)
    executor = Executor(FakeEngine(), store, sleep=lambda s: None, scheduler=where)
    spec = module(values, retries, extra)
    result = executor.start(spec, {}, {"out": str(tmp_path / "out")}).wait()
    return result, fake, store.load_shards(result.record.run_id)


def kinds(rec: ShardRecord) -> list[tuple[str | None, bool]]:
    return [(a.failure, a.counted) for a in rec.attempts]


# -- the registry and the record ----------------------------------------------------------


def test_the_registry_names_local_and_slurm_and_refuses_an_unknown_name() -> None:
    assert placement.names() == ("local", "slurm")
    assert isinstance(placement.make("local", Where()), LocalPool)
    slurm = placement.make("slurm", Where(flags={"partition": "gpu"}, conf={"account": "a"}))
    assert isinstance(slurm, ArrayPlacement) and isinstance(slurm.backend, SlurmBackend)
    assert slurm.backend.settings.partition == "gpu" and slurm.backend.settings.account == "a"
    assert placement.backend("local") is None and placement.backend("newer") is None
    assert [f.decl for f in placement.flags("slurm")][:2] == ["--partition", "--account"]
    with pytest.raises(UsageError, match="no placement 'k8s'; known: local, slurm"):
        placement.make("k8s", Where())


def test_the_scheduler_kind_is_an_open_checked_name() -> None:
    assert SchedulerRecord(kind="slurm", job_ids=["12"]).kind == "slurm"  # old records read
    assert SchedulerRecord.model_validate({"kind": "kubernetes"}).kind == "kubernetes"
    for bad in ("../x", "Slurm", "", "a" * 40, "x/y"):
        with pytest.raises(ValidationError, match="not a placement name"):
            SchedulerRecord(kind=bad)


# -- the generic follower -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "shard_state", "attempts"),
    [
        (
            [(PENDING, None), (PENDING, None), (RUNNING, "ok"), (SUCCEEDED, None)],
            "succeeded",
            [(None, True)],
        ),
        ([(RUNNING, "exit3"), (FAILED, None)], "failed", [("exit_code", True)]),
        # The cluster's SIGTERM reads as a cancel to the worker; its outcome replaces it.
        ([(RUNNING, "sigterm"), (DEADLINE, None)], "failed", [("timeout", True)]),
        ([(RUNNING, "sigterm"), (OOM, None)], "failed", [("oom", True)]),
        ([(RUNNING, "sigterm"), (DELETED, None)], "cancelled", [("cancelled", True)]),
        # A pod that died without writing its record.
        ([(RUNNING, None), (FAILED, None)], "failed", [("worker_failed", True)]),
        ([(RUNNING, None), (DEADLINE, None)], "failed", [("timeout", True)]),
    ],
)
def test_each_end_of_a_task_is_one_attempt_of_its_kind(
    tmp_path: Path, steps: list[Step], shard_state: str, attempts: list[object]
) -> None:
    result, fake, shards = cluster_run(tmp_path, [steps])
    assert shards[0].state == shard_state
    assert kinds(shards[0]) == attempts
    assert len(fake.submitted) == 1
    assert result.record.scheduler == SchedulerRecord(kind="fake", job_ids=["0"])


def test_a_cancel_from_outside_the_cluster_cancels_the_run(tmp_path: Path) -> None:
    result, fake, shards = cluster_run(tmp_path, [[(RUNNING, "sigterm"), (DELETED, None)]])
    assert result.record.state == "cancelled" and shards[0].state == "cancelled"
    assert kinds(shards[0]) == [("cancelled", True)]  # the worker's own record of it
    assert len(fake.submitted) == 1


@pytest.mark.parametrize(("lost", "kind"), [(EVICTED, "node_lost"), (PREEMPTED, "preempted")])
def test_a_lost_task_is_an_uncounted_attempt_and_its_shard_is_submitted_again(
    tmp_path: Path, lost: TaskState, kind: str
) -> None:
    jobs = [[(RUNNING, "sigterm"), (lost, None)], [(RUNNING, "ok"), (SUCCEEDED, None)]]
    result, fake, shards = cluster_run(tmp_path, jobs)
    assert result.record.state == "succeeded" and len(fake.submitted) == 2
    assert kinds(shards[0]) == [(kind, False), (None, True)]
    assert fake.submitted[1].indices == [0] and fake.submitted[1].number == 1


def test_a_shard_lost_more_often_than_max_resubmits_fails(tmp_path: Path) -> None:
    lost = [(RUNNING, None), (EVICTED, None)]
    result, fake, shards = cluster_run(tmp_path, [lost, lost, lost, lost])
    assert result.record.state == "failed"
    assert len(fake.submitted) == 3  # pacing.max_resubmits = 2
    # Each loss is recorded uncounted; the last word is one counted attempt that fails it.
    assert kinds(shards[0]) == [("node_lost", False)] * 3 + [("node_lost", True)]
    assert "lost 3 times; not submitted again" in shards[0].attempts[-1].message


def test_a_requeued_task_keeps_its_lost_run_as_node_lost(tmp_path: Path) -> None:
    steps = [(RUNNING, "sigterm"), (PENDING, None), (RUNNING, "ok"), (SUCCEEDED, None)]
    result, fake, shards = cluster_run(tmp_path, [steps])
    assert result.record.state == "succeeded" and len(fake.submitted) == 1
    assert kinds(shards[0]) == [("node_lost", False), (None, True)]
    assert shards[0].attempts[0].message == "fake requeued 0/0"


def test_a_timeout_is_retried_by_resubmission_within_max_attempts(tmp_path: Path) -> None:
    timeout = [(RUNNING, "sigterm"), (DEADLINE, None)]
    ok = [(RUNNING, "ok"), (SUCCEEDED, None)]
    result, fake, shards = cluster_run(
        tmp_path, [timeout, timeout, ok], retries="{max_attempts: 2}"
    )
    assert result.record.state == "failed" and len(fake.submitted) == 2
    assert kinds(shards[0]) == [("timeout", True), ("timeout", True)]


def test_a_task_the_cluster_forgot_is_a_worker_failure_after_three_polls(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    fake = FakeCluster(store, [[(RUNNING, None)]])
    fake.live["0"] = {}  # the cluster lists no task of the job
    executor = Executor(FakeEngine(), store, sleep=lambda s: None, scheduler=ArrayPlacement(fake))
    result = executor.start(module(), {}, {"out": str(tmp_path / "out")}).wait()
    shard = store.load_shards(result.record.run_id)[0]
    assert kinds(shard) == [("worker_failed", True)]
    assert shard.attempts[0].message == "fake task 0/0: UNKNOWN"


def test_an_array_past_the_clusters_limit_goes_as_arrays_one_after_another(
    tmp_path: Path,
) -> None:
    # 5 shards where an array may hold 2 tasks (indices 0-1): shards 0-1 as tasks 0-1,
    # then 2-3 and 4 renumbered from 0, each listed in a file for `worker --batch`.
    ok = [(RUNNING, "ok"), (SUCCEEDED, None)]
    result, fake, shards = cluster_run(tmp_path, [ok, ok, ok], values=5, max_tasks=2)
    assert result.record.state == "succeeded"
    assert [s.indices for s in fake.submitted] == [[0, 1], [0, 1], [0]]
    assert fake.submitted[0].batches is None  # task K is shard K while that fits
    plans = [json.loads(s.batches.read_text()) for s in fake.submitted[1:] if s.batches]
    assert plans == [[[2], [3]], [[4]]]
    assert all(shards[i].state == "succeeded" for i in range(5))
    assert result.record.scheduler is not None and len(result.record.scheduler.job_ids) == 3


def test_a_resume_of_shards_past_the_limit_renumbers_them(tmp_path: Path) -> None:
    # The run's shards 3 and 4 failed; a resume submits them as tasks 0 and 1.
    ok, broke = [(RUNNING, "ok"), (SUCCEEDED, None)], [(RUNNING, "exit3"), (FAILED, None)]
    first, fake, _ = cluster_run(tmp_path, [ok, broke, ok], values=5, max_tasks=3)
    assert first.record.state == "failed"
    executor = Executor(
        FakeEngine(), fake.store, sleep=lambda s: None, scheduler=ArrayPlacement(fake)
    )
    resumed = executor.resume(module(5, "{}", ""), first.record.run_id).wait()
    assert resumed.record.state == "succeeded"
    last = fake.submitted[-1]
    assert last.indices == [0, 1] and last.batches is not None
    assert json.loads(last.batches.read_text()) == [[3], [4]]


def test_a_detached_run_that_needs_several_arrays_is_refused_before_submission(
    tmp_path: Path,
) -> None:
    with pytest.raises(PlacementError, match="several arrays"):
        cluster_run(tmp_path, [[(RUNNING, "ok")]], values=3, max_tasks=2, detach=True)
    store = RunStore(tmp_path / "runs")
    rec = store.load_run(store.ids()[0])
    assert rec.state == "failed" and (rec.reason or "").startswith(
        "fake_refused: module 'fake': 3 shards need several arrays"
    )
    assert rec.scheduler is None or rec.scheduler.job_ids == []


def test_detach_hands_back_the_job_named_by_its_cluster(tmp_path: Path) -> None:
    with pytest.raises(Detached) as detached:
        cluster_run(tmp_path, [[(RUNNING, None)]], detach=True)
    assert detached.value.job_ids == ["0"] and detached.value.label == "Fake job"


# -- resume: refused while a job of the run is active, whatever runs the resume -----------


@pytest.mark.parametrize("resume_on", ["fake", "local"])
def test_a_resume_is_refused_while_a_job_of_the_run_is_active(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume_on: str
) -> None:
    monkeypatch.setitem(REGISTRY, "fake", "fake_cluster")
    first, fake, _ = cluster_run(
        tmp_path, [[(RUNNING, "exit3"), (FAILED, None)], [(RUNNING, "ok"), (SUCCEEDED, None)]]
    )
    run_id = first.record.run_id
    where = placement.make(resume_on, Where())
    executor = Executor(FakeEngine(), fake.store, sleep=lambda s: None, scheduler=where)
    spec = ModuleSpec.model_validate(first.record.spec)
    fake.live["0"] = {0: RUNNING}
    with pytest.raises(JobStillActive) as err:
        executor.resume(spec, run_id)
    assert str(err.value) == (
        f"run {run_id} cannot resume: its Fake job 0 is still Running; nothing was "
        f"submitted. Wait for it to end (containerexec runs show {run_id}), or cancel it "
        "(fake-delete 0), then resume"
    )
    assert len(fake.submitted) == 1 and fake.cancelled == []
    fake.live.clear()
    if resume_on == "local":
        return  # the FakeEngine cannot run the shard here; the check is what is tested
    again = executor.resume(spec, run_id).wait()
    assert again.record.state == "succeeded" and len(fake.submitted) == 2


def test_a_local_resume_of_a_slurm_run_goes_ahead_where_slurm_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue here
    rec = fake_cluster_record(tmp_path)
    LocalPool().resumable(rec)  # no error: no job of it can be running from here


def fake_cluster_record(tmp_path: Path) -> RunRecord:
    first, _, _ = cluster_run(tmp_path, [[(RUNNING, "ok"), (SUCCEEDED, None)]])
    sched = SchedulerRecord(kind="slurm", job_ids=["12"])
    return first.record.model_copy(update={"scheduler": sched})


def test_the_fake_cluster_module_is_a_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "fake", "fake_cluster")
    assert placement.flags("fake") == fake_cluster.FLAGS
    assert placement.settings("fake") == ("namespace",)


# -- the CLI's choice: --on, each placement's flags, config file and environment -----------


def test_the_cli_makes_the_placement_from_flags_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(runs_dir=tmp_path / "runs", engine_factory=FakeEngine)
    monkeypatch.chdir(tmp_path)
    none = {"on": None, "detach": False, "push_to": None}
    assert isinstance(make_scheduler(app, **none), LocalPool)
    with pytest.raises(UsageError, match="--detach is for runs on Slurm; add --on slurm"):
        make_scheduler(app, **{**none, "detach": True})

    (tmp_path / "containerexec.toml").write_text(
        '[slurm]\non = "slurm"\naccount = "lab"\noptions = "--qos=long"\n'
    )
    monkeypatch.setenv("CONTAINEREXEC_SLURM_PARTITION", "cpu")
    where = make_scheduler(
        app, **none, partition=None, account=None, time_limit="5", sbatch_options=("--x",)
    )
    assert isinstance(where, ArrayPlacement) and isinstance(where.backend, SlurmBackend)
    settings = where.backend.settings
    assert (settings.partition, settings.account, settings.time) == ("cpu", "lab", "5")
    assert settings.options == ("--qos=long", "--x")

    (tmp_path / "containerexec.toml").write_text('[slurm]\nqueue = "x"\n')
    with pytest.raises(UsageError, match="has no setting 'queue'; known: partition, account"):
        make_scheduler(app, **none)


def test_run_help_lists_every_placements_flags() -> None:
    out = CliRunner().invoke(cli, ["run", "--help"]).output
    for flag in ("--on [local|slurm]", "--partition", "--time TIME", "--sbatch-option OPT"):
        assert flag in out


def test_a_task_out_of_time_gets_its_workers_last_words_before_it_is_charged(
    tmp_path: Path,
) -> None:
    # The cluster shows the time limit while the worker, SIGTERMed, still stops its container.
    steps = [(RUNNING, "started"), (DEADLINE, None), (DEADLINE, None), (DEADLINE, "sigterm")]
    result, fake, shards = cluster_run(tmp_path, [steps])
    assert result.record.state == "failed" and len(fake.submitted) == 1
    assert kinds(shards[0]) == [("timeout", True)]
    assert fake.polls == {"0": 3}
