"""One container lifecycle (runner.Container) for a single shard and a packed batch: the same
start failure is the same Failure, retried (or not) the same way, on the FakeEngine."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from fakes import FakeEngine

from containerexec.engine.base import StartFailed
from containerexec.errors import EngineError, ImageError
from containerexec.model.invocation import Invocation
from containerexec.model.spec import parse_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.runner import Attempt, Container, Failure, Tracker
from containerexec.store.records import ShardRecord
from containerexec.store.tree import RunStore

SPEC = (
    "name: fake\nenvironment: {image: containerexec/base:bookworm}\n"
    "outputs: {out: {type: directory}}\ncommand: ['true', '${{shard.index}}']\n"
    "array: {range: 2, max_parallel: 1%s}\n"
    "retries: {max_attempts: 2}\n"
)


class NoStart(FakeEngine):
    """Runs packing's image probe, and refuses to start any other container."""

    def __init__(self, **flags: bool) -> None:
        super().__init__()
        self.flags = flags

    def start(self, container_id: str) -> None:
        if self.containers_by_id[container_id].inv.name.endswith("-probe"):
            return super().start(container_id)
        raise StartFailed(container_id, "the engine said no", command_not_found=False, **self.flags)


class NoCreate(FakeEngine):
    """Runs packing's image probe, and fails to create any other container with `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        if inv.name.endswith("-probe"):
            return super().create(inv, secrets=secrets)
        raise self.error


def run_with(engine: FakeEngine, tmp_path: Path, *, packed: bool) -> list[ShardRecord]:
    spec = parse_spec(SPEC % (", batch_size: 2" if packed else ""), "fake.yaml")
    executor = Executor(engine, RunStore(tmp_path / "runs"), sleep=lambda s: None)
    out = {"out": str(tmp_path / "out")}
    run = executor.start(spec, {}, out, options=RunOptions())
    result = run.wait()
    assert run.task_size == (2 if packed else 1)
    return sorted(result.failed, key=lambda r: r.index)


def kinds(records: list[ShardRecord]) -> list[list[str | None]]:
    return [[a.failure for a in r.attempts] for r in records]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, [Failure.ENGINE_ERROR, Failure.ENGINE_ERROR]),  # the engine's fault: retried
        ({"cannot_exec": True}, [Failure.CANNOT_EXEC]),  # as exit 126: never retried
    ],
)
def test_a_start_failure_is_the_same_failure_packed_or_not(
    tmp_path: Path, flags: dict[str, bool], expected: list[Failure]
) -> None:
    single = run_with(NoStart(**flags), tmp_path / "single", packed=False)
    packed = run_with(NoStart(**flags), tmp_path / "packed", packed=True)

    assert kinds(single) == kinds(packed) == [list(expected), list(expected)]
    for record in packed:
        assert "the engine said no" in (record.attempts[-1].message or "")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EngineError("the daemon said 500", operation="create"), [Failure.ENGINE_ERROR] * 2),
        (ImageError("fake", "gone:1", "not on the engine"), [Failure.IMAGE_NOT_FOUND]),
    ],
)
def test_a_create_failure_is_the_same_failure_packed_or_not(
    tmp_path: Path, error: Exception, expected: list[Failure]
) -> None:
    single = run_with(NoCreate(error), tmp_path / "single", packed=False)
    packed = run_with(NoCreate(error), tmp_path / "packed", packed=True)

    assert kinds(single) == kinds(packed) == [list(expected), list(expected)]


def test_a_one_shard_task_of_a_packed_run_runs_unpacked(tmp_path: Path) -> None:
    engine = FakeEngine()
    spec = parse_spec((SPEC % ", batch_size: 2").replace("range: 2", "range: 3"), "fake.yaml")
    executor = Executor(engine, RunStore(tmp_path / "runs"), sleep=lambda s: None)
    run = executor.start(spec, {}, {"out": str(tmp_path / "out")})
    run.wait()

    drivers = [inv.shard_index for inv in engine.created if inv.argv[-1].endswith("driver.sh")]
    assert run.task_size == 2
    assert drivers == [0]  # tasks [0, 1] and [2]: one batch container
    assert [inv.argv for inv in engine.created if inv.shard_index == 2] == [["true", "2"]]


def test_a_cancel_before_start_creates_nothing(tmp_path: Path) -> None:
    from containerexec.run.logs import LogSink

    engine = FakeEngine()
    tracker = Tracker()
    tracker.cancelled.set()
    inv = Invocation(run_id="r", module="m", image="i", user="0:0", name="n", argv=["true"])
    c = Container(engine, inv, secrets={}, log=LogSink(tmp_path / "log"), tracker=tracker,
                  clock=lambda: 1.0)  # fmt: skip
    failed = c.start()
    c.close()
    c.log.finish()
    assert isinstance(failed, Attempt) and failed.failure == Failure.CANCELLED
    assert engine.created == []


def test_durations_are_on_the_monotonic_clock_unless_a_clock_is_injected(tmp_path: Path) -> None:
    wall = Executor(FakeEngine(), RunStore(tmp_path)).services
    assert wall.timer is time.monotonic and wall.clock is time.time

    def fake() -> float:
        return 42.0

    injected = Executor(FakeEngine(), RunStore(tmp_path), clock=fake).services
    assert injected.timer is fake  # tests drive deadlines in fake time
