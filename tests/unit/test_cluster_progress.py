"""What a first user of a cluster sees: the submission and its job id as soon as the
cluster returns it, the push announced, a push failure that names the whole command to
run again (--push-to included), and a resume refused by the cluster that keeps the reason
the run had stopped for. On tests/fake_cluster.py and the fake engine."""

from __future__ import annotations

from pathlib import Path

from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fake_cluster import FAILED, RUNNING, SUCCEEDED, FakeCluster
from fakes import FakeEngine

from containerexec.model.spec import ModuleSpec, parse_spec
from containerexec.run.executor import Executor
from containerexec.run.placement.base import PlacementError
from containerexec.run.placement.cluster import ArrayPlacement
from containerexec.store.tree import RunStore

DIGEST = "reg.example/x@sha256:" + "b" * 64


def module(values: int = 1, retries: str = "{}", extra: str = "") -> ModuleSpec:
    """An array of `values` shards on an image the cluster's nodes can pull."""
    return parse_spec(
        f"name: fake\nenvironment: {{image: '{DIGEST}'}}\ncommand: ['true']\n"
        f"outputs: {{out: {{type: directory}}}}\nretries: {retries}\n"
        f"array: {{values: {list(range(values))}{extra}}}\n",
        "fake.yaml",
    )


def test_the_submission_and_its_job_id_are_announced_as_the_cluster_returns_it(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "runs")
    fake = FakeCluster(store, [[(RUNNING, "ok"), (SUCCEEDED, None)]])
    said: list[str] = []

    def notice(text: str) -> None:
        # Said before the follower polls: the job exists, none of its tasks has run yet.
        said.append(f"{text} [polls {sum(fake.polls.values())}]")

    where = ArrayPlacement(fake, sleep=lambda s: None, notice=notice)
    executor = Executor(FakeEngine(), store, sleep=lambda s: None, scheduler=where)
    spec = module(values=3, extra=", max_parallel: 2")
    result = executor.start(spec, {}, {"out": str(tmp_path / "out")}).wait()
    run_id = result.record.run_id
    assert result.record.state == "succeeded"
    assert said == [
        f"submitting run {run_id} to Fake (array 0-2%2) ... [polls 0]",
        f"submitted Fake job 0 (array 0-2%2) for run {run_id} [polls 0]",
    ]


def test_a_resume_the_cluster_refuses_keeps_the_reason_the_run_had_stopped_for(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "runs")
    fake = FakeCluster(store, [[(RUNNING, "exit3"), (FAILED, None)]], max_tasks=100)
    where = ArrayPlacement(fake, sleep=lambda s: None)
    executor = Executor(FakeEngine(), store, sleep=lambda s: None, scheduler=where)
    spec = module(values=1, retries="{fail_run_on_exit_codes: [3]}")
    first = executor.start(spec, {}, {"out": str(tmp_path / "out")}).wait()
    run_id = first.record.run_id
    before = first.record.reason
    assert first.record.state == "failed" and (before or "").startswith("fail_fast: shard 0")

    fake.limit = 0
    try:
        executor.resume(spec, run_id).wait()
    except PlacementError as exc:
        assert "too many tasks" in str(exc)
    else:
        raise AssertionError("the resume was not refused")
    rec = store.load_run(run_id)
    assert rec.state == "failed" and rec.reason == before
    assert len(fake.submitted) == 1


def test_a_failed_push_is_announced_and_its_hint_is_the_whole_command_with_push_to(
    workspace: FakeWorkspace,
) -> None:
    spec = workspace.spec("name: pushed\ninputs: {n: {type: integer}}\ncommand: ['true']\n")
    done = workspace.cli(
        "run", str(spec), "-i", "n=1", "--on", "slurm", "--partition", "debug",
        "--push-to", "127.0.0.1:5999/pushed:1",
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "pushing " in done.stderr and " to 127.0.0.1:5999/pushed:1 ..." in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith(
        f"then run again: containerexec run {spec} -i n=1 --on slurm "
        "--partition debug --push-to 127.0.0.1:5999/pushed:1"
    ), last
