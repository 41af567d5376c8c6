"""One container's life on an Engine, and the retries of a shard's attempts.

`Container` is the one lifecycle (create, attach, start, wait with a timeout, stop
with grace, remove, and the classification of each step's failure) that single
shards (`run_invocation`) and packed batches (run/packing/batch.py) both use, so the same
failure is the same Failure, retried the same way. The container is kept until
its exit status and logs are read, then removed; never auto-removed. Time (`clock`,
`sleep`) is injected so retry and timeout logic can be tested in milliseconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from containerexec.engine.base import (
    Engine,
    EngineLost,
    ExitStatus,
    LogStream,
    StartFailed,
    WaitTimeout,
)
from containerexec.errors import EngineError, EngineUnavailable, ImageError
from containerexec.model.hostsafety import invocation_refusal
from containerexec.model.invocation import Invocation
from containerexec.model.spec import RetryPolicy
from containerexec.run.logs import LogSink
from containerexec.run.trace import Sampler, final
from containerexec.store.records import AttemptTrace, ShardState

ENGINE_WAIT_S = 120.0  # how long to wait for a restarting engine
MAX_ENGINE_LOSSES = 5


class Failure(StrEnum):
    """Why an attempt failed; recorded, and used to decide on a retry."""

    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    OOM = "oom"
    TIMEOUT = "timeout"
    KILLED = "killed"
    IMAGE_NOT_FOUND = "image_not_found"
    COMMAND_NOT_FOUND = "command_not_found"
    CANNOT_EXEC = "cannot_exec"
    OUTPUTS_MISSING = "outputs_missing"
    OUTPUT_COLLISION = "output_collision"  # a path another shard committed
    UNSAFE_OUTPUT = "unsafe_output"  # a link out of an output, or a FIFO, socket, device
    UNSAFE_MOUNT = "unsafe_mount"  # the host-safety rule refused a mount: nothing was created
    NO_SPACE = "no_space"
    ENGINE_LOST = "engine_lost"
    ENGINE_ERROR = "engine_error"
    CANCELLED = "cancelled"
    # A cluster's own outcomes (run/placement/follower.py).
    NODE_LOST = "node_lost"  # the node failed: run again, not counted as a retry
    PREEMPTED = "preempted"  # the scheduler took the node back: run again, not counted
    TIME_LIMIT = "time_limit"  # the job's time limit ended the task
    WORKER_FAILED = "worker_failed"  # the task ended without writing the shard's record


# Retrying these cannot help unless the user lists the exit code explicitly.
NOT_RETRIED = {
    Failure.OOM,
    Failure.COMMAND_NOT_FOUND,
    Failure.CANNOT_EXEC,
    Failure.IMAGE_NOT_FOUND,
    Failure.CANCELLED,
    Failure.NO_SPACE,
    Failure.OUTPUT_COLLISION,
    Failure.UNSAFE_OUTPUT,
    Failure.UNSAFE_MOUNT,
}


@dataclass(frozen=True)
class Attempt:
    """What one container run came to."""

    number: int
    started_at: float
    ended_at: float
    container_id: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    failure: Failure | None = None
    message: str = ""
    counted: bool = True
    log_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    trace: AttemptTrace | None = None  # None: no container ran

    @property
    def ok(self) -> bool:
        return self.failure is None


def shard_state(last: Attempt) -> ShardState:
    """What a shard's last attempt makes of it."""
    if last.ok:
        return "succeeded"
    return "cancelled" if last.failure == Failure.CANCELLED else "failed"


class Tracker:
    """The containers running now, so a cancel can stop them all at once."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def add(self, container_id: str) -> None:
        with self._lock:
            self._running.add(container_id)

    def discard(self, container_id: str) -> None:
        with self._lock:
            self._running.discard(container_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)


class Container:
    """One container's life through the Engine, for a single shard and a packed batch alike:
    create, attach and start (`start`), wait with a timeout and stop with grace (`wait`),
    and remove (`close`), each step's failure classified here and nowhere else.

    Every mount passes the host-safety rule first (`outputs_under`: where this run's
    outputs may be), whoever built the Invocation: a refused one creates no container.
    The container is kept until its exit status and logs are read; `keep` leaves it.
    """

    def __init__(
        self,
        engine: Engine,
        inv: Invocation,
        *,
        secrets: Mapping[str, str],
        log: LogSink,
        tracker: Tracker,
        clock: Callable[[], float],
        number: int = 1,
        grace_s: float = 5.0,
        keep: bool = False,
        outputs_under: Sequence[Path] | None = None,
    ) -> None:
        self.engine = engine
        self.inv = inv
        self.secrets = secrets
        self.log = log
        self.tracker = tracker
        self.clock = clock
        self.grace_s = grace_s
        self.keep = keep
        self.outputs_under = outputs_under
        started = clock()
        self.base = Attempt(number=number, started_at=started, ended_at=started)
        self.cid: str | None = None
        self._reader: threading.Thread | None = None
        self.sampler: Sampler | None = None  # its figures, while it runs (run/trace.py)

    def failed(self, failure: Failure, message: str, *, counted: bool = True) -> Attempt:
        """The attempt, ended now with `failure`."""
        return replace(
            self.base,
            container_id=self.cid,
            ended_at=self.clock(),
            failure=failure,
            message=message,
            counted=counted,
        )

    def start(self) -> Attempt | None:
        """Create, attach and start the container, its output pumped into the log; None
        when it runs, else the failed attempt (a cancel first is one, CANCELLED).

        A start failure is COMMAND_NOT_FOUND or CANNOT_EXEC when the engine says so,
        else ENGINE_ERROR (retried); a lost engine is ENGINE_LOST (not counted).
        """
        engine, tracker = self.engine, self.tracker
        if tracker.cancelled.is_set():
            return self.failed(Failure.CANCELLED, "cancelled before start")
        try:
            root = engine.places()
            refused = invocation_refusal(
                self.inv, engine_places=root, outputs_under=self.outputs_under
            )
            if refused:
                why = f"refused before any container was created: {refused}"
                return self.failed(Failure.UNSAFE_MOUNT, why)
            self.cid = cid = engine.create(self.inv, secrets=self.secrets)
        except ImageError as exc:
            return self.failed(Failure.IMAGE_NOT_FOUND, str(exc))
        except EngineUnavailable as exc:
            return self.failed(Failure.ENGINE_LOST, str(exc), counted=False)
        except EngineError as exc:
            return self.failed(Failure.ENGINE_ERROR, str(exc))
        tracker.add(cid)
        try:
            if tracker.cancelled.is_set():
                return self.failed(Failure.CANCELLED, "cancelled before start")
            stream = engine.attach(cid)
            try:
                engine.start(cid)
            except StartFailed as exc:
                stream.close()
                return self.failed(start_failure(exc), str(exc))
            self.sampler = Sampler.start(engine, cid, clock=self.clock)
            if tracker.cancelled.is_set():  # a cancel between create and start stopped nothing
                engine.stop(cid, grace_s=self.grace_s)
        except (EngineLost, EngineUnavailable) as exc:
            return self.failed(Failure.ENGINE_LOST, str(exc), counted=False)
        self._reader = threading.Thread(target=_pump, args=(stream, self.log), daemon=True)
        self._reader.start()
        return None

    def wait(self, timeout_s: float | None) -> tuple[ExitStatus, bool]:
        """Its exit status, and whether it outlived `timeout_s` (then it was stopped, with
        grace). Raises EngineLost or EngineUnavailable when the engine lost it."""
        assert self.cid is not None, "wait() before a successful start()"
        try:
            return self.engine.wait(self.cid, timeout_s=timeout_s), False
        except WaitTimeout:
            self.stop()
            return self.engine.wait(self.cid, timeout_s=self.grace_s + 30), True
        finally:
            final(self.sampler)  # it has exited: the sampling ends

    def stop(self) -> None:
        """SIGTERM, the grace period, then SIGKILL; quiet when the engine fails."""
        if self.cid is not None:
            with contextlib.suppress(EngineError):
                self.engine.stop(self.cid, grace_s=self.grace_s)

    def drain(self) -> None:
        """Wait for the rest of its output (a bounded wait) and end the log."""
        if self._reader is not None:
            self._reader.join(timeout=30)
        self.log.finish()

    def close(self) -> None:
        """Forget it (a cancel no longer stops it) and remove it unless `keep`."""
        if self.cid is None:
            return
        self.tracker.discard(self.cid)
        final(self.sampler)
        if not self.keep:
            _remove_quietly(self.engine, self.cid)


def start_failure(exc: StartFailed) -> Failure:
    """What a failed start makes of an attempt, for one shard and a packed batch alike."""
    if exc.command_not_found:
        return Failure.COMMAND_NOT_FOUND
    if exc.cannot_exec:
        return Failure.CANNOT_EXEC
    return Failure.ENGINE_ERROR  # the engine's fault: retried


def run_invocation(
    engine: Engine,
    inv: Invocation,
    *,
    secrets: Mapping[str, str],
    log: LogSink,
    tracker: Tracker,
    clock: Callable[[], float],
    number: int = 1,
    grace_s: float = 5.0,
    keep: bool = False,
    outputs_under: Sequence[Path] | None = None,
) -> Attempt:
    """Run one container to its end and say what happened. Never leaves it behind unless `keep`."""
    c = Container(
        engine,
        inv,
        secrets=secrets,
        log=log,
        tracker=tracker,
        clock=clock,
        number=number,
        grace_s=grace_s,
        keep=keep,
        outputs_under=outputs_under,
    )
    try:
        failed = c.start()
        if failed is not None:
            return failed
        timeout = inv.limits.timeout_s
        try:
            status, timed_out = c.wait(timeout)
        except (EngineLost, EngineUnavailable) as exc:
            return c.failed(Failure.ENGINE_LOST, str(exc), counted=False)
        c.drain()
        result = replace(
            c.base,
            container_id=c.cid,
            ended_at=clock(),
            exit_code=status.exit_code,
            oom_killed=status.oom_killed,
            log_tail=list(log.tail),
            stderr_tail=list(log.stderr_tail),
            trace=final(c.sampler),
        )
        return classify(
            result,
            timed_out=timed_out,
            cancelled=tracker.cancelled.is_set(),
            timeout_s=timeout,
            engine_error=status.error,
        )
    finally:
        c.close()


def _pump(stream: LogStream, log: LogSink) -> None:
    for out, err in stream:
        if out:
            log.write("stdout", out)
        if err:
            log.write("stderr", err)


def _remove_quietly(engine: Engine, cid: str) -> None:
    try:
        engine.remove(cid)
    except EngineError:
        pass  # the executor's sweep by run label removes it once the engine is back


def classify(
    a: Attempt, *, timed_out: bool, cancelled: bool, timeout_s: float | None, engine_error: str
) -> Attempt:
    """Name the failure of a finished attempt, or none when it exited 0."""
    code = a.exit_code
    if cancelled and code != 0:
        return replace(a, failure=Failure.CANCELLED, message="cancelled")
    if timed_out:
        return replace(
            a, failure=Failure.TIMEOUT, message=f"timed out after {timeout_s:g} s and was stopped"
        )
    if a.oom_killed:
        return replace(a, failure=Failure.OOM, message=f"exited with {code} (OOM-killed)")
    if code == 0:
        return a
    if any("No space left on device" in line for line in a.stderr_tail):
        return replace(
            a,
            failure=Failure.NO_SPACE,
            message=f"exited with {code}: No space left on device (see the log)",
        )
    if code == 127:
        return replace(
            a,
            failure=Failure.COMMAND_NOT_FOUND,
            message=f"exited with 127 (command not found) {engine_error}".strip(),
        )
    if code == 126:
        return replace(
            a,
            failure=Failure.CANNOT_EXEC,
            message="exited with 126 (the command cannot be executed: a folder, or no "
            f"execute permission) {engine_error}".strip(),
        )
    if code == 137:
        return replace(a, failure=Failure.KILLED, message="exited with 137 (killed from outside)")
    if code is not None and code > 128:
        return replace(
            a, failure=Failure.SIGNAL, message=f"exited with {code} (signal {code - 128})"
        )
    return replace(a, failure=Failure.EXIT_CODE, message=f"exited with {code}")


def should_retry(policy: RetryPolicy, attempt: Attempt, counted_attempts: int) -> bool:
    """Whether a failed attempt gets another try under `policy`."""
    if attempt.failure is None or attempt.failure == Failure.CANCELLED:
        return False
    if fails_run(policy, attempt):
        return False
    if not attempt.counted:
        return True
    if counted_attempts >= policy.max_attempts:
        return False
    codes = policy.on_exit_codes
    if codes is not None:
        return attempt.exit_code in codes
    return attempt.failure not in NOT_RETRIED


def fails_run(policy: RetryPolicy, attempt: Attempt) -> bool:
    """Whether a failed attempt fails its whole run at once (`fail_run_on_exit_codes`)."""
    return (
        attempt.failure not in (None, Failure.CANCELLED)
        and attempt.exit_code in policy.fail_run_on_exit_codes
    )


def backoff_s(policy: RetryPolicy, counted_attempts: int) -> float:
    """Exponential delay before attempt `counted_attempts + 1`, capped at backoff.max."""
    b = policy.backoff
    return float(min(b.initial * b.factor ** max(counted_attempts - 1, 0), b.max))


def wait_for_engine(
    engine: Engine,
    *,
    sleep: Callable[[float], object],
    clock: Callable[[], float],
    limit_s: float = ENGINE_WAIT_S,
) -> bool:
    """Ping until the engine answers again or `limit_s` passes."""
    deadline = clock() + limit_s
    while clock() < deadline:
        try:
            engine.ping()
            return True
        except EngineError:
            sleep(1.0)
    return False


def run_with_retries(
    engine: Engine,
    inv: Invocation,
    policy: RetryPolicy,
    *,
    secrets: Mapping[str, str],
    tracker: Tracker,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    log_for: Callable[[int], LogSink],
    before: Callable[[], None],
    after: Callable[[Attempt], Attempt],
    on_attempt: Callable[[Attempt, bool], None],
    grace_s: float = 5.0,
    keep: bool = False,
    outputs_under: Sequence[Path] | None = None,
    timer: Callable[[], float] = time.monotonic,
) -> list[Attempt]:
    """Attempts of one shard until it succeeds, fails for good, or is cancelled.

    `before` resets the staging folder, `after` checks and commits a succeeded
    attempt's outputs (and may turn it into a failure). Attempts lost with the
    engine do not use up the retry budget.
    """
    attempts: list[Attempt] = []
    counted = losses = 0
    while True:
        before()
        log = log_for(len(attempts) + 1)
        try:
            a = run_invocation(
                engine,
                inv,
                secrets=secrets,
                log=log,
                tracker=tracker,
                clock=clock,
                number=len(attempts) + 1,
                grace_s=grace_s,
                keep=keep,
                outputs_under=outputs_under,
            )
        finally:
            log.finish()  # an attempt that never started still holds its log file open
        if a.ok:
            a = after(a)
        counted += a.counted
        retry = should_retry(policy, a, counted) and not tracker.cancelled.is_set()
        attempts.append(a)
        if a.failure == Failure.ENGINE_LOST and retry:
            losses += 1
            on_attempt(a, True)  # says that we wait for the engine
            retry = losses <= MAX_ENGINE_LOSSES and wait_for_engine(
                engine, sleep=sleep, clock=timer
            )
            if retry and a.container_id:
                _remove_quietly(engine, a.container_id)  # frees the name for the next attempt
            if not retry:
                attempts[-1] = replace(
                    a,
                    message=f"{a.message}; the engine did not come back within {ENGINE_WAIT_S:g} s",
                )
                on_attempt(attempts[-1], False)
                return attempts
            continue
        on_attempt(a, retry)
        if not retry:
            return attempts
        if a.counted:
            sleep(backoff_s(policy, counted))
