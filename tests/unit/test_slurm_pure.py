"""The pure half of the Slurm scheduler: the sbatch script (golden files), array syntax,
time limits, squeue parsing, and how Slurm's outcomes map to failure kinds: the follower
against a fake Slurm client whose tasks run `Executor.work` on a FakeEngine, as a real
task's worker does (tests/engine/test_slurm.py runs them on a real cluster).

Regenerate the golden scripts with `UPDATE_GOLDEN=1 pytest tests/unit/test_slurm_pure.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from fake_cluster import work
from fakes import FakeEngine

from containerexec.model.spec import ModuleSpec, parse_spec
from containerexec.run.executor import Executor
from containerexec.run.placement.base import JobStillActive
from containerexec.run.placement.slurm import slurm_placement
from containerexec.run.placement.slurm.backend import ENDED_BY_SLURM, LOST, task_state
from containerexec.run.placement.slurm.client import SlurmClient, SlurmError, parse_states
from containerexec.run.placement.slurm.script import (
    SlurmSettings,
    array_indices,
    render_script,
    time_limit,
)
from containerexec.run.results import RunResult
from containerexec.run.runner import Failure
from containerexec.store.records import ShardRecord
from containerexec.store.tree import RunStore

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def spec(**extra: object) -> ModuleSpec:
    return ModuleSpec.model_validate(
        {
            "name": "wc",
            "environment": {"image": "reg.example/wc@sha256:" + "a" * 64},
            "command": ["wc", "-l"],
            "array": {"range": 8, "max_parallel": 3},
            **extra,
        }
    )


def golden_text(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1 and review it"
    )


def test_the_plain_array_script_matches_its_golden_file() -> None:
    script = render_script(
        run_id="wc-1",
        module="wc",
        run_dir=Path("/shared/runs/wc-1"),
        indices=[0, 1, 2, 3, 5, 7],
        throttle=3,
        spec=spec(),
        settings=SlurmSettings(python="/opt/venv/bin/python"),
    )
    golden_text("sbatch_array.sh", script)


def test_a_packed_array_script_runs_one_batch_per_task() -> None:
    script = render_script(
        run_id="wc-3",
        module="wc",
        run_dir=Path("/shared/runs/wc-3"),
        indices=[0, 1, 2],
        throttle=2,
        spec=spec(resources={"timeout": 60}),
        settings=SlurmSettings(python="/opt/venv/bin/python"),
        batches=Path("/shared/runs/wc-3/slurm/batches-0.json"),
        task_size=4,
    )
    golden_text("sbatch_packed.sh", script)
    assert "#SBATCH --time=6" in script  # 4 values x 60 s + the 120 s margin -> 6 min


def test_resources_and_settings_become_sbatch_options() -> None:
    script = render_script(
        run_id="wc-2",
        module="wc",
        run_dir=Path("/shared/runs/wc-2"),
        indices=[4],
        throttle=1,
        spec=spec(
            resources={"cpus": 1.5, "memory": "300m", "timeout": "10m"},
            retries={"max_attempts": 2, "backoff": {"initial": 30}},
        ),
        settings=SlurmSettings(
            partition="gpu",
            account="lab",
            options=("--qos=long",),
            python="/opt/venv/bin/python",
        ),
    )
    golden_text("sbatch_resources.sh", script)


@pytest.mark.parametrize(
    ("indices", "expected"),
    [([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3], "3"), ([2, 1, 1, 0], "0-2"), ([0, 2, 4], "0,2,4")],
)
def test_array_indices_are_compressed_into_ranges(indices: list[int], expected: str) -> None:
    assert array_indices(indices) == expected


def test_the_time_limit_covers_every_attempt_its_backoff_and_a_margin() -> None:
    assert time_limit(spec()) is None  # no timeout: the partition's default
    one = spec(resources={"timeout": "10m"})
    assert time_limit(one) == "12"  # 600 s + 120 s margin
    three = spec(resources={"timeout": 60}, retries={"max_attempts": 3})
    assert time_limit(three) == "6"  # 3 x 60 s + backoffs 1 s + 2 s + 120 s -> 303 s
    # A packed task runs its values one after another: each value's attempts count.
    assert time_limit(three, values=10) == "33"  # 10 x 183 s + 120 s -> 1950 s


def test_squeue_lines_parse_to_states_by_index() -> None:
    out = "0|COMPLETED|None\n1|RUNNING|None\n5|PENDING|JobArrayTaskLimit\n[junk]\n"
    assert parse_states(out) == {
        0: ("COMPLETED", "None"),
        1: ("RUNNING", "None"),
        5: ("PENDING", "JobArrayTaskLimit"),
    }


def test_slurm_outcomes_map_to_failure_kinds_and_lost_ones_are_not_the_shards_fault() -> None:
    assert LOST == {
        "NODE_FAIL": Failure.NODE_LOST,
        "BOOT_FAIL": Failure.NODE_LOST,
        "PREEMPTED": Failure.PREEMPTED,
    }
    # Out of time reads the same as a local timeout: `timeout`.
    assert ENDED_BY_SLURM["TIMEOUT"] == ENDED_BY_SLURM["DEADLINE"] == Failure.TIMEOUT
    assert ENDED_BY_SLURM["OUT_OF_MEMORY"] == Failure.OOM
    assert ENDED_BY_SLURM["CANCELLED"] == Failure.CANCELLED


# -- the follower against a fake Slurm ----------------------------------------------------

# What a task's worker does when the task reaches a step: run the shard to its end (exit 0
# or 3), or run it as Slurm's SIGTERM finds it (the worker records a cancel), or nothing.
Step = tuple[str, str | None]  # (Slurm state, worker action)


class FakeSlurm:
    """A SlurmClient whose job N's tasks walk through `jobs[N]`, one step per poll; a step's
    action runs the shard through `Executor.work`, as the task's worker would."""

    def __init__(self, store: RunStore, jobs: Sequence[Sequence[Step]]) -> None:
        self.store = store
        self.jobs = jobs
        self.submitted: list[Path] = []
        self.polls: dict[str, int] = {}
        self.cancelled: list[str] = []
        self.live: dict[str, dict[int, tuple[str, str]]] = {}  # job -> states, for a resume

    def submit(self, script: Path) -> str:
        for job in list(self.polls):  # time passes: earlier jobs' workers finish what they do
            while self.polls[job] < len(self.jobs[int(job) - 100]) - 1:
                self.states(job)
        self.submitted.append(script)
        return str(100 + len(self.submitted) - 1)

    def states(self, job_id: str) -> dict[int, tuple[str, str]]:
        if job_id in self.live:
            return self.live[job_id]
        steps = self.jobs[int(job_id) - 100]
        n = self.polls[job_id] = self.polls.get(job_id, -1) + 1
        state, action = steps[min(n, len(steps) - 1)]
        script = self.submitted[int(job_id) - 100].read_text()
        run_id = script.split("containerexec run ")[1].split(":")[0]
        tasks = [int(t) for t in script.split("--array=")[1].split("%")[0].split(",")]
        if n < len(steps) and action is not None:
            for task in tasks:
                work(self.store, run_id, task, action)
        return {task: (state, "None") for task in tasks}

    def max_array_size(self) -> int:
        return 1001

    def cancel(self, job_id: str, *, pending_only: bool = False) -> None:
        self.cancelled.append(job_id)


def slurm_run(
    tmp_path: Path, jobs: Sequence[Sequence[Step]], retries: str = "{}"
) -> tuple[RunResult, FakeSlurm, dict[int, ShardRecord]]:
    store = RunStore(tmp_path / "runs")
    fake = FakeSlurm(store, jobs)
    sched = slurm_placement(client=fake, sleep=lambda s: None)  # type: ignore[arg-type]
    executor = Executor(FakeEngine(), store, sleep=lambda s: None, scheduler=sched)
    text = (
        "name: fake\nenvironment: {image: 'reg.example/x@sha256:" + "a" * 64 + "'}\n"
        "outputs: {out: {type: directory}}\ncommand: ['true']\narray: {values: [a]}\n"
        f"retries: {retries}\n"
    )
    spec = parse_spec(text, "fake.yaml")
    result = executor.start(spec, {}, {"out": str(tmp_path / "out")}).wait()
    shards = store.load_shards(result.record.run_id)
    return result, fake, shards


def kinds(rec: ShardRecord) -> list[tuple[str | None, bool]]:
    return [(a.failure, a.counted) for a in rec.attempts]


@pytest.mark.parametrize(
    ("state", "worker", "shard_state", "attempts"),
    [
        ("COMPLETED", "ok", "succeeded", [(None, True)]),
        ("FAILED", "exit3", "failed", [("exit_code", True)]),
        # Slurm's SIGTERM reads as a cancel to the worker; Slurm's outcome replaces it.
        ("TIMEOUT", "sigterm", "failed", [("timeout", True)]),
        ("DEADLINE", "sigterm", "failed", [("timeout", True)]),
        ("OUT_OF_MEMORY", "sigterm", "failed", [("oom", True)]),
        ("CANCELLED", "sigterm", "cancelled", [("cancelled", True)]),
        # A task that never wrote its record (SIGKILL, no shared folder).
        ("TIMEOUT", None, "failed", [("timeout", True)]),
        ("FAILED", None, "failed", [("worker_failed", True)]),
    ],
)
def test_each_final_slurm_state_is_one_attempt_of_its_kind(
    tmp_path: Path, state: str, worker: str | None, shard_state: str, attempts: list[object]
) -> None:
    _, fake, shards = slurm_run(tmp_path, [[("RUNNING", worker), (state, None)]])
    assert shards[0].state == shard_state
    assert kinds(shards[0]) == attempts
    assert len(fake.submitted) == 1  # none of these is submitted again


@pytest.mark.parametrize(
    ("state", "kind"),
    [("NODE_FAIL", "node_lost"), ("BOOT_FAIL", "node_lost"), ("PREEMPTED", "preempted")],
)
@pytest.mark.parametrize("worker", ["sigterm", None])
def test_a_lost_node_is_an_uncounted_attempt_and_the_shard_is_submitted_again(
    tmp_path: Path, state: str, kind: str, worker: str | None
) -> None:
    jobs = [[("RUNNING", worker), (state, None)], [("RUNNING", "ok"), ("COMPLETED", None)]]
    result, fake, shards = slurm_run(tmp_path, jobs)  # max_attempts: 1
    assert result.record.state == "succeeded"
    assert kinds(shards[0]) == [(kind, False), (None, True)]
    assert len(fake.submitted) == 2


def test_a_lost_tasks_worker_gets_to_write_its_record_before_the_follower_does(
    tmp_path: Path,
) -> None:
    # Slurm shows NODE_FAIL while the worker, SIGTERMed, still stops its container.
    lost = [("RUNNING", "started"), ("NODE_FAIL", None), ("NODE_FAIL", None)]
    jobs = [[*lost, ("NODE_FAIL", "sigterm")], [("RUNNING", "ok"), ("COMPLETED", None)]]
    result, fake, shards = slurm_run(tmp_path, jobs)
    assert result.record.state == "succeeded" and len(fake.submitted) == 2
    assert kinds(shards[0]) == [("node_lost", False), (None, True)]


def test_a_requeued_task_keeps_its_lost_run_as_node_lost_uncounted(tmp_path: Path) -> None:
    # scontrol requeue, or a node failure with requeue: the same task runs again.
    steps = [("RUNNING", "sigterm"), ("PENDING", None), ("RUNNING", "ok"), ("COMPLETED", None)]
    result, fake, shards = slurm_run(tmp_path, [steps])
    assert result.record.state == "succeeded"
    assert kinds(shards[0]) == [("node_lost", False), (None, True)]
    assert "requeued" in shards[0].attempts[0].message
    assert len(fake.submitted) == 1


def test_a_slurm_timeout_counts_against_max_attempts_like_a_local_one(tmp_path: Path) -> None:
    timeout = [("RUNNING", "sigterm"), ("TIMEOUT", None)]
    ok = [("RUNNING", "ok"), ("COMPLETED", None)]
    result, fake, shards = slurm_run(tmp_path, [timeout, ok], retries="{max_attempts: 2}")
    assert result.record.state == "succeeded" and len(fake.submitted) == 2
    assert kinds(shards[0]) == [("timeout", True), (None, True)]

    result, fake, shards = slurm_run(
        tmp_path / "2", [timeout, timeout, ok], retries="{max_attempts: 2}"
    )
    assert result.record.state == "failed" and len(fake.submitted) == 2  # no third job
    assert kinds(shards[0]) == [("timeout", True), ("timeout", True)]
    assert "time limit" in shards[0].attempts[-1].message


def test_resume_is_refused_while_the_runs_job_is_still_in_slurm(tmp_path: Path) -> None:
    ok = [("RUNNING", "ok"), ("COMPLETED", None)]
    first, fake, _ = slurm_run(tmp_path, [[("RUNNING", "exit3"), ("FAILED", None)], ok])
    run_id = first.record.run_id
    sched = slurm_placement(client=fake, sleep=lambda s: None)  # type: ignore[arg-type]
    engine = FakeEngine()
    executor = Executor(engine, fake.store, sleep=lambda s: None, scheduler=sched)
    spec = ModuleSpec.model_validate(first.record.spec)
    fake.live["100"] = {0: ("RUNNING", "None")}  # as if an admin requeued it meanwhile
    with pytest.raises(JobStillActive) as err:
        executor.resume(spec, run_id)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert "Slurm job 100 is still RUNNING" in str(err.value)
    assert "scancel 100" in str(err.value) and f"runs show {run_id}" in str(err.value)
    assert len(fake.submitted) == 1 and fake.cancelled == []  # never kills, never resubmits
    assert fake.store.load_shards(run_id)[0].state == "failed"  # the record untouched

    fake.live.clear()  # the job ended: the resume goes ahead
    again = executor.resume(spec, run_id).wait()
    assert again.record.state == "succeeded" and len(fake.submitted) == 2


def test_slurms_states_in_the_followers_words() -> None:
    pending, running, hold = (
        task_state("PENDING"),
        task_state("RUNNING"),
        task_state("REQUEUE_HOLD"),
    )
    assert pending.active and pending.queued and not pending.running
    assert running.active and running.running and not running.queued
    assert hold.queued and not hold.active  # requeued, held: the follower reads it as ended
    assert task_state("NODE_FAIL").lost == Failure.NODE_LOST and not task_state("NODE_FAIL").active
    assert task_state("TIMEOUT").ended_by == Failure.TIMEOUT
    done = task_state("COMPLETED")
    assert (done.active, done.lost, done.ended_by) == (False, None, None)


def test_a_pending_task_is_waited_for_then_its_record_is_trusted(tmp_path: Path) -> None:
    steps = [("PENDING", None), ("PENDING", None), ("RUNNING", "ok"), ("COMPLETED", None)]
    result, fake, shards = slurm_run(tmp_path, [steps])
    assert result.record.state == "succeeded" and kinds(shards[0]) == [(None, True)]
    assert fake.polls == {"100": 3}


def test_a_missing_slurm_command_is_an_error_that_says_so(tmp_path: Path) -> None:
    client = SlurmClient(env={"PATH": str(tmp_path)})
    with pytest.raises(SlurmError) as err:
        client.states("12")
    assert err.value.missing and "'squeue' is not installed here" in str(err.value)
    assert err.value.kind == "slurm"
