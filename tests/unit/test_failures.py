"""Empty arrays, cannot_exec, fail-fast and the deadline: the pure rules, and the scheduling
on a FakeEngine with an injected clock (tests/engine/test_failures.py runs them for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, Outcome

from containerexec.cli.status import run_status
from containerexec.engine.base import StartFailed
from containerexec.errors import SpecError, UsageError
from containerexec.model import arrays
from containerexec.model.invocation import Invocation
from containerexec.model.spec import ArraySpec, RetryPolicy, parse_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import RunResult
from containerexec.run.runner import Attempt, Failure, classify, should_retry
from containerexec.store.tree import RunStore


def spec_text(array: str, retries: str = "{}", extra: str = "") -> str:
    return (
        "name: fake\nenvironment: {image: containerexec/base:bookworm}\n"
        "outputs: {out: {type: directory}}\ncommand: ['true', '${{shard.index}}']\n"
        f"array: {{{array}}}\nretries: {retries}\n{extra}"
    )


class StepClock:
    """A clock that moves only when a test (or its fake engine) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_fake(
    engine: FakeEngine, tmp_path: Path, text: str, clock: StepClock | None = None, **options: Any
) -> RunResult:
    executor = Executor(
        engine, RunStore(tmp_path / "runs"), clock=clock or StepClock(), sleep=lambda s: None
    )
    spec = parse_spec(text, "fake.yaml")
    out = {"out": str(tmp_path / "out")}
    return executor.start(spec, {}, out, options=RunOptions(**options)).wait()


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (ArraySpec(values=[]), "array.values is empty"),
        (ArraySpec(range=0), "array.range is 0"),
    ],
)
def test_an_empty_array_is_a_usage_error(array: ArraySpec, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        arrays.expand(array, {})


def test_an_empty_glob_names_its_pattern_and_folder(tmp_path: Path) -> None:
    array = ArraySpec.model_validate({"glob": {"input": "corpus", "pattern": "*.txt"}})
    with pytest.raises(UsageError) as err:
        arrays.expand(array, {"corpus": str(tmp_path)})
    assert f"pattern '*.txt' matches no file in '{tmp_path}'" in str(err.value)
    assert "array.allow_empty: true" in str(err.value)


def test_allow_empty_gives_no_shard() -> None:
    assert arrays.expand(ArraySpec(range=0, allow_empty=True), {}) == []


def test_exit_126_is_cannot_exec_and_not_retried_unless_listed() -> None:
    a = classify(
        Attempt(number=1, started_at=0, ended_at=1, exit_code=126),
        timed_out=False,
        cancelled=False,
        timeout_s=None,
        engine_error="",
    )
    assert a.failure == Failure.CANNOT_EXEC
    assert not should_retry(RetryPolicy(max_attempts=3), a, 1)
    assert should_retry(RetryPolicy(max_attempts=3, on_exit_codes=[126]), a, 1)


def test_a_fail_run_code_is_never_retried_and_cannot_also_be_retried() -> None:
    a = Attempt(number=1, started_at=0, ended_at=1, exit_code=2, failure=Failure.EXIT_CODE)
    assert not should_retry(RetryPolicy(max_attempts=3, fail_run_on_exit_codes=[2]), a, 1)
    with pytest.raises(SpecError, match="in both 'on_exit_codes'"):
        parse_spec(spec_text("range: 2", "{on_exit_codes: [2], fail_run_on_exit_codes: [2]}"), "x")


def test_fail_fast_starts_no_new_shard_and_records_why(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=3 if inv.shard_index == 2 else 0))
    text = spec_text("range: 10, max_parallel: 1", "{max_attempts: 4, fail_run_on_exit_codes: [3]}")
    result = run_fake(engine, tmp_path, text)
    assert engine.started == [0, 1, 2]
    assert engine.attempts[2] == 1
    assert result.record.state == "failed"
    assert result.record.reason == "fail_fast: shard 2 exited with 3"
    assert result.record.counts == {"failed": 1, "pending": 7, "succeeded": 2}
    assert run_status(result.record) == 1


def test_other_exit_codes_do_not_fail_the_run(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=1 if inv.shard_index == 2 else 0))
    text = spec_text("range: 5, max_parallel: 1", "{fail_run_on_exit_codes: [3]}")
    result = run_fake(engine, tmp_path, text)
    assert sorted(engine.started) == [0, 1, 2, 3, 4]
    assert result.record.reason is None


def test_the_deadline_stops_the_running_shard_and_starts_no_more(tmp_path: Path) -> None:
    clock = StepClock()

    def slow(inv: Invocation, n: int) -> Outcome:
        clock.now += 100  # the shard "runs" past the deadline at once
        return Outcome(seconds=30)

    engine = FakeEngine(slow)
    text = spec_text("range: 3, max_parallel: 1", "{max_attempts: 5}", "resources: {deadline: 1m}")
    result = run_fake(engine, tmp_path, text, clock)
    assert engine.started == [0]
    assert result.record.state == "failed"
    assert result.record.reason == "deadline_exceeded: the run's deadline of 60 s passed"
    assert result.record.counts == {"cancelled": 1, "pending": 2}
    assert run_status(result.record) == 124


def test_the_deadline_flag_overrides_the_spec(tmp_path: Path) -> None:
    engine = FakeEngine()
    text = spec_text("range: 2", extra="resources: {deadline: 1m}")
    result = run_fake(engine, tmp_path, text, deadline_s=3600.0)
    assert result.record.deadline_s == 3600.0
    assert result.record.state == "succeeded"


def test_an_engine_that_cannot_exec_the_command_is_cannot_exec_too(tmp_path: Path) -> None:
    class Refusing(FakeEngine):
        def start(self, container_id: str) -> None:
            raise StartFailed(
                container_id, "permission denied", command_not_found=False, cannot_exec=True
            )

    engine = Refusing()
    result = run_fake(engine, tmp_path, spec_text("range: 1", "{max_attempts: 3}"))
    [shard] = result.failed
    assert shard.failure == "cannot_exec" and len(shard.attempts) == 1
