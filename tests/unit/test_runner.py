"""Retry, backoff and failure classification with injected time; scheduling on a FakeEngine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, Outcome

from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import Backoff, ModuleSpec, RetryPolicy, parse_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.logs import LogSink
from containerexec.run.results import RunResult
from containerexec.run.runner import (
    Attempt,
    Failure,
    Tracker,
    backoff_s,
    classify,
    run_invocation,
    run_with_retries,
    should_retry,
    wait_for_engine,
)
from containerexec.store.tree import RunStore


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def spec_text(array: str = "range: 4", retries: str = "{}", extra: str = "") -> str:
    return (
        "name: fake\nenvironment: {image: containerexec/base:bookworm}\n"
        "outputs: {out: {type: directory}}\n"
        "command: ['true', '${{shard.index}}']\n"
        f"array: {{{array}}}\nretries: {retries}\n{extra}"
    )


def invocation(shard: int = 0, timeout: str | None = None) -> Invocation:
    extra = f"resources: {{timeout: {timeout}}}\n" if timeout else ""
    spec = parse_spec(spec_text(extra=extra), "fake.yaml")
    return resolve(
        spec,
        Bindings({}, {"out": "/out"}),
        Shard(shard, str(shard), 4),
        run_id="fake-1",
        image="sha256:" + "f" * 64,
        staging=Path("/s"),
        user="1:1",
    )


def attempt(code: int | None, **kw: Any) -> Attempt:
    a = Attempt(number=1, started_at=0.0, ended_at=1.0, exit_code=code)
    return replace(a, **kw)


def classified(code: int | None, **kw: Any) -> Failure | None:
    flags: dict[str, Any] = {
        "timed_out": False,
        "cancelled": False,
        "timeout_s": 5.0,
        "engine_error": "",
    }
    flags |= {k: kw.pop(k) for k in list(kw) if k in flags}
    return classify(attempt(code, **kw), **flags).failure


@pytest.mark.parametrize(
    ("code", "kw", "failure"),
    [
        (0, {}, None),
        (1, {}, Failure.EXIT_CODE),
        (127, {}, Failure.COMMAND_NOT_FOUND),
        (137, {}, Failure.KILLED),
        (139, {}, Failure.SIGNAL),
        (137, {"oom_killed": True}, Failure.OOM),
        (143, {"timed_out": True}, Failure.TIMEOUT),
        (143, {"cancelled": True}, Failure.CANCELLED),
        (1, {"stderr_tail": ["write: No space left on device"]}, Failure.NO_SPACE),
    ],
)
def test_failures_are_classified(code: int, kw: dict[str, object], failure: Failure) -> None:
    assert classified(code, **kw) == failure


def test_a_shard_that_finished_before_the_cancel_still_succeeded() -> None:
    assert classified(0, cancelled=True) is None


@pytest.mark.parametrize(
    ("failure", "code", "policy", "counted", "retry"),
    [
        (Failure.EXIT_CODE, 1, RetryPolicy(max_attempts=3), 1, True),
        (Failure.EXIT_CODE, 1, RetryPolicy(max_attempts=3), 3, False),
        (Failure.EXIT_CODE, 1, RetryPolicy(max_attempts=1), 1, False),
        (Failure.OOM, 137, RetryPolicy(max_attempts=3), 1, False),
        (Failure.COMMAND_NOT_FOUND, 127, RetryPolicy(max_attempts=3), 1, False),
        (Failure.IMAGE_NOT_FOUND, None, RetryPolicy(max_attempts=3), 1, False),
        (Failure.OOM, 137, RetryPolicy(max_attempts=3, on_exit_codes=[137]), 1, True),
        (Failure.EXIT_CODE, 1, RetryPolicy(max_attempts=3, on_exit_codes=[137]), 1, False),
        (Failure.TIMEOUT, 143, RetryPolicy(max_attempts=2), 1, True),
    ],
)
def test_should_retry_follows_the_policy(
    failure: Failure, code: int | None, policy: RetryPolicy, counted: int, retry: bool
) -> None:
    assert should_retry(policy, attempt(code, failure=failure), counted) is retry


def test_cancelled_is_never_retried_and_engine_losses_always_are() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert not should_retry(policy, attempt(143, failure=Failure.CANCELLED), 0)
    assert should_retry(policy, attempt(None, failure=Failure.ENGINE_LOST, counted=False), 5)


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(max_attempts=9, backoff=Backoff(initial=1, factor=2, max=5))
    assert [backoff_s(policy, n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def retries(
    engine: FakeEngine,
    policy: RetryPolicy,
    tmp_path: Path,
    clock: FakeClock,
    tracker: Tracker | None = None,
) -> list[Attempt]:
    attempts: list[Attempt] = run_with_retries(
        engine,
        invocation(),
        policy,
        secrets={},
        tracker=tracker or Tracker(),
        clock=clock,
        sleep=clock.sleep,
        log_for=lambda n: LogSink(tmp_path / f"{n}.log"),
        before=lambda: None,
        after=lambda a: a,
        on_attempt=lambda a, retry: None,
    )
    return attempts


def test_a_shard_that_fails_once_then_succeeds_takes_two_attempts(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=1 if n == 1 else 0))
    clock = FakeClock()
    attempts = retries(engine, RetryPolicy(max_attempts=3), tmp_path, clock)
    assert [a.failure for a in attempts] == [Failure.EXIT_CODE, None]
    assert clock.sleeps == [1.0]
    assert len(engine.removed) == 2  # every container removed, failed or not


def test_an_always_failing_shard_stops_at_max_attempts_with_backoff(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=2))
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, backoff=Backoff(initial=0.5, factor=3, max=2))
    attempts = retries(engine, policy, tmp_path, clock)
    assert [a.exit_code for a in attempts] == [2, 2, 2, 2]
    assert clock.sleeps == [0.5, 1.5, 2.0]


def test_engine_losses_do_not_use_up_the_retry_budget(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(lost=n <= 2))
    clock = FakeClock()
    attempts = retries(engine, RetryPolicy(max_attempts=1), tmp_path, clock)
    assert [a.failure for a in attempts] == [Failure.ENGINE_LOST, Failure.ENGINE_LOST, None]
    assert [a.counted for a in attempts] == [False, False, True]


def test_wait_for_engine_gives_up_after_its_limit() -> None:
    engine = FakeEngine()
    engine.reachable = False
    clock = FakeClock()
    assert not wait_for_engine(engine, sleep=clock.sleep, clock=clock, limit_s=10)
    assert 9 <= clock.now - 1000.0 <= 11


def test_a_timeout_stops_the_container_and_is_reported_as_timeout(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=30))
    a = run_invocation(
        engine,
        invocation(timeout="0.05"),
        secrets={},
        log=LogSink(tmp_path / "x.log"),
        tracker=Tracker(),
        clock=FakeClock(),
        grace_s=0,
    )
    assert a.failure == Failure.TIMEOUT
    assert "timed out after 0.05 s" in a.message
    assert engine.containers_by_id == {}


def test_nothing_starts_once_cancelled(tmp_path: Path) -> None:
    engine = FakeEngine()
    tracker = Tracker()
    tracker.cancelled.set()
    attempts = retries(engine, RetryPolicy(max_attempts=3), tmp_path, FakeClock(), tracker)
    assert [a.failure for a in attempts] == [Failure.CANCELLED]
    assert engine.started == []


def run_fake(
    engine: FakeEngine, tmp_path: Path, spec: ModuleSpec, **options: Any
) -> tuple[Executor, RunResult]:
    executor = Executor(engine, RunStore(tmp_path / "runs"), sleep=lambda s: None)
    resume = options.pop("resume", None)
    outputs = {"out": str(tmp_path / "out")}
    if resume:
        run = executor.resume(spec, resume, options=RunOptions(**options))
    else:
        run = executor.start(spec, {}, outputs, options=RunOptions(**options))
    return executor, run.wait()


def test_never_more_than_max_parallel_containers_run_at_once(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=0.05))
    spec = parse_spec(spec_text("range: 12, max_parallel: 3"), "fake.yaml")
    _, result = run_fake(engine, tmp_path, spec)
    assert result.state == "succeeded"
    assert engine.max_running == 3
    assert sorted(engine.started) == list(range(12))


def test_the_max_parallel_option_overrides_the_spec(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(seconds=0.05))
    spec = parse_spec(spec_text("range: 6, max_parallel: 4"), "fake.yaml")
    run_fake(engine, tmp_path, spec, max_parallel=1)
    assert engine.max_running == 1


def test_the_image_is_resolved_once_per_run(tmp_path: Path) -> None:
    engine = FakeEngine()
    spec = parse_spec(spec_text("range: 5"), "fake.yaml")
    run_fake(engine, tmp_path, spec)
    assert engine.image_lookups == 1
    assert len({c for c in engine.started}) == 5


def test_one_failing_shard_does_not_starve_the_others(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=3 if inv.shard_index == 1 else 0))
    spec = parse_spec(spec_text("range: 5, max_parallel: 2", "{max_attempts: 3}"), "fake.yaml")
    _, result = run_fake(engine, tmp_path, spec)
    assert result.state == "failed"
    assert engine.attempts == {0: 1, 1: 3, 2: 1, 3: 1, 4: 1}
    assert [s.index for s in result.failed] == [1]


def test_max_failed_shards_stops_new_shards(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=1))
    spec = parse_spec(spec_text("range: 20, max_parallel: 1, max_failed_shards: 2"), "fake.yaml")
    _, result = run_fake(engine, tmp_path, spec)
    assert engine.started == [0, 1]
    assert result.record.counts == {"failed": 2, "pending": 18}


def test_resume_runs_only_the_shards_that_did_not_succeed(tmp_path: Path) -> None:
    spec = parse_spec(spec_text("range: 4"), "fake.yaml")
    first = FakeEngine(lambda inv, n: Outcome(exit_code=1 if inv.shard_index in (1, 3) else 0))
    _, result = run_fake(first, tmp_path, spec)
    second = FakeEngine()
    _, again = run_fake(second, tmp_path, spec, resume=result.record.run_id)
    assert sorted(second.started) == [1, 3]
    assert again.state == "succeeded"


def test_a_shard_that_breaks_outside_its_container_fails_alone(tmp_path: Path) -> None:
    class Breaking(FakeEngine):
        def create(self, inv: Invocation, *, secrets: Any) -> str:
            if inv.shard_index == 2:
                raise RuntimeError("disk went read-only")
            return super().create(inv, secrets=secrets)

    engine = Breaking()
    spec = parse_spec(spec_text("range: 5, max_parallel: 1"), "fake.yaml")
    _, result = run_fake(engine, tmp_path, spec)
    assert result.state == "failed"
    assert sorted(engine.started) == [0, 1, 3, 4]  # the worker went on after shard 2
    assert [(s.index, s.failure) for s in result.failed] == [(2, "engine_error")]
    assert "disk went read-only" in result.failed[0].message
