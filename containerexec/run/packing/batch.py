"""A packed batch: K shard values of an array run one after another inside ONE container;
and the local worker loop that runs a run's tasks.

Starting a container costs about 70 ms of wall time here, so 10,000 tiny shards
spend minutes starting containers. A batch container runs a POSIX shell driver
(`/bin/sh`, generated here; no containerexec or Python in the image) that, for
each value in order, runs the value's own script in a process group of its own
(and kills what it leaves running before the next starts): make `/outputs/NAME` a link to
the value's own staging folder, export the value's environment, `exec` its argv
(every word single-quoted), under `timeout` when the spec has one. Each value's
stdout and stderr go to its own files and its exit status (and whether the
kernel OOM-killed it) to a status file; the host follows those files while the
container runs and, as each value ends, saves its log, checks and commits its
outputs and writes its record, exactly as for a shard in its own container.

A value that fails and may be retried is retried in its own container once the
batch container is gone (so `max_parallel` still bounds containers), without
rerunning the values that succeeded. When the container itself dies (killed,
engine lost, a stop), the value that was running is charged with it and the values
not yet started go back to the queue uncounted. Records hold each value's usual
Invocation, so `repro` runs one value in its own container as before.

The values of a Python module run in one interpreter instead (run/packing/pyvalues.py):
the container runs ctl/driver.py with python3, which writes the same state files.

Layout of a batch (store.batch_dir), mounted under /.containerexec-batch:
  ctl/    (read-only) driver.sh, with each value's script in it; or driver.py and batch.json
  state/  status (run/packing/status.py: each value's start and end), NNNNNN.out, .err
  stage/  NNNNNN/<output>/, each value's staging folder
  links/  mounted at /outputs: the links the driver points at the running value

Which shards share a container is planned in run/packing/planner.py. On a cluster
(run/placement/follower.py), one array task carries one batch and calls `run_batch` on
its node through Executor.work_batch; the values a task did not start are submitted again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from containerexec.engine.base import EngineLost, ExitStatus
from containerexec.errors import EngineError
from containerexec.labels import LABEL_SHARD
from containerexec.model.arrays import Shard
from containerexec.model.invocation import OUTPUTS_ROOT, Invocation, Mount
from containerexec.run.context import RunContext, Task
from containerexec.run.logs import LogSink
from containerexec.run.packing import planner, pyvalues
from containerexec.run.packing.scripts import ROOT, SHELL, driver_script, output_links, value_script
from containerexec.run.packing.status import StatusFile
from containerexec.run.runner import (
    Attempt,
    Container,
    Failure,
    backoff_s,
    classify,
    run_with_retries,
    should_retry,
)
from containerexec.run.trace import Sampler
from containerexec.store.records import AttemptTrace, ShardRecord, make_durable

POLL_S = 0.02


def size(path: Path) -> int | None:
    """The size of a file, None when there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def run_tasks(run: RunContext, planned: list[Task], parallel: int) -> None:
    """Run `planned` on this machine: `parallel` workers, each running one task's container
    at a time, in order; a one-shard task runs unpacked (Run.run_shard_safely), a larger
    one in a batch container, and the shards a dead batch container did not start go
    back to the queue as a task of their own."""
    if planner.packed(planned):
        planner.ready(run, planned[0])  # the image can run packed: before any container
    queue: deque[Task] = deque(planned)
    wake = threading.Condition()
    busy = 0

    def worker() -> None:
        nonlocal busy
        while True:
            with wake:
                while not queue and busy and not run.stopping():
                    wake.wait(0.5)
                if not queue or run.stopping():
                    return
                task = queue.popleft()
                busy += 1
            back: list[Shard] = []
            try:
                if len(task) == 1:
                    run.run_shard_safely(task[0])
                else:
                    back = run_batch(run, task)
            finally:
                with wake:
                    busy -= 1
                    if back:
                        queue.append(back)
                    wake.notify_all()

    in_threads(worker, parallel, "task-worker")


def in_threads(target: Callable[[], None], count: int, name: str) -> None:
    """Run `target` on `count` threads and return when all have ended (the worker pools)."""
    threads = [
        threading.Thread(target=target, name=f"{name}-{i}", daemon=True) for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@dataclass
class Value:
    """One shard of a batch: its record so far and its staging folder."""

    shard: Shard
    base: ShardRecord
    staging: Path

    @property
    def name(self) -> str:
        return f"{self.shard.index:06d}"

    @property
    def inv(self) -> Invocation:
        return self.base.invocation


def run_batch(run: RunContext, shards: list[Shard]) -> list[Shard]:
    """Run `shards` packed in one container and record each; returns those to run again
    (not started because the container died), which have no new record."""
    batch = Batch(run, shards)
    try:
        return batch.execute()
    except Exception as exc:  # a broken batch must not stop its worker
        for shard in shards:
            if shard.index not in batch.settled:
                run.crashed(shard, exc)
        return []


class Batch:
    """One batch container from its scripts to the last value's record."""

    def __init__(self, run: RunContext, shards: list[Shard]) -> None:
        self.run = run
        self.root = run.services.store.batch_dir(run.id, shards[0].index)
        self.values: list[Value] = []
        self.retries: list[tuple[Value, Attempt]] = []
        self.shards = shards
        self.settled: set[int] = set()  # shards recorded (or kept for a retry) by this batch
        self.cid: str | None = None
        self.unsynced: list[Path] = []  # records written without fsync, made durable at the end
        self.began: dict[int, float] = {}  # shard -> time.monotonic() its start was seen
        self.sampler: Sampler | None = None  # the batch container's figures (run/trace.py)
        self.said = StatusFile(self.root / "state" / "status")  # what the driver said

    # -- the container -----------------------------------------------------------------

    def execute(self) -> list[Shard]:
        run = self.run
        shutil.rmtree(self.root, ignore_errors=True)
        for shard in self.shards:
            base = run.base_record(shard, attempts=run.earlier_attempts(shard))
            v = Value(shard, base, self.root / "stage" / f"{shard.index:06d}")
            if (
                run.services.cache is not None
                and run.from_cache(shard, base, v.staging) is not None
            ):
                self.settled.add(shard.index)
                continue
            self.values.append(v)
        back: list[Shard] = []
        try:
            if self.values:
                with run.services.slots or contextlib.nullcontext():
                    back = self._container()
            for v, first in self.retries:
                self._retry(v, first)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            # The batch's records are fsynced here, together, not one by one as they end (an
            # fsync per value was most of a packed run's time); a machine crash before this
            # only means --resume runs those values again (their output claims are durable).
            # Outputs are not fsynced, as for an unpacked shard.
            make_durable(self.unsynced)
        return back

    def _write(self) -> Invocation:
        """The scripts, folders and Invocation of the batch container."""
        run, ctl = self.run, self.root / "ctl"
        for sub in ("ctl", "state", "stage", "links"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        inv0 = self.values[0].inv
        timeout, grace = inv0.limits.timeout_s, run.record.grace_s
        for v in self.values:
            run.outputs.prepare(v.staging, v.inv)
        if pyvalues.shared([v.inv for v in self.values]):  # one interpreter for them all
            named = [(v.name, v.inv) for v in self.values]
            argv = pyvalues.write(ctl, named, timeout_s=timeout, grace_s=grace)
        else:
            scripts = [
                (
                    v.name,
                    value_script(
                        v.inv,
                        output_links(v.inv),
                        f"{ROOT}/stage/{v.name}",
                        timeout_s=timeout,
                        grace_s=grace,
                    ),
                )
                for v in self.values
            ]
            (ctl / "driver.sh").write_text(driver_script(scripts))
            argv = [SHELL, f"{ROOT}/ctl/driver.sh"]

        def bind(sub: str, target: str, read_only: bool) -> Mount:
            kind = "input" if read_only else "output"
            return Mount(
                kind=kind,
                name=f".batch-{sub}",  # one of model/names.py INTERNAL_MOUNTS
                source=str(self.root / sub),
                target=target,
                read_only=read_only,
            )

        mounts = [m for m in inv0.mounts if m.kind == "input"]
        mounts += [
            bind("ctl", f"{ROOT}/ctl", True),
            bind("state", f"{ROOT}/state", False),
            bind("stage", f"{ROOT}/stage", False),
            bind("links", OUTPUTS_ROOT, False),
        ]
        last = self.values[-1].shard.index
        return inv0.model_copy(
            update={
                "argv": argv,
                "env": {},  # each value exports its own; secrets come with the container
                "mounts": mounts,
                "name": f"cx-{run.id}-b{inv0.shard_index}",
                "labels": {**inv0.labels, LABEL_SHARD: f"{inv0.shard_index}-{last}"},
                "limits": inv0.limits.model_copy(update={"timeout_s": None}),
            }
        )

    def _container(self) -> list[Shard]:
        """Create, start and follow the batch container; returns the values to run again."""
        run, services = self.run, self.run.services
        inv = self._write()
        if run.tracker.cancelled.is_set():
            return []  # never started: no record, counted as not started
        driver_log = LogSink(self.root / "driver.log")
        container = Container(
            services.engine,
            inv,
            secrets=services.secrets,
            log=driver_log,
            tracker=run.tracker,
            clock=services.clock,
            grace_s=run.record.grace_s,
            outputs_under=[self.root],
        )
        try:
            failed = container.start()
            self.cid, self.sampler = container.cid, container.sampler
            if failed is not None and failed.failure == Failure.CANCELLED:
                return []  # as above: a cancel came between create and start
            if failed is not None:  # the same failure as one shard's container, for each
                for v in self.values:
                    self._settle(v, failed)
                return []
            return self._follow(container, driver_log)
        finally:
            driver_log.finish()
            container.close()

    def _follow(self, container: Container, driver_log: LogSink) -> list[Shard]:
        run = self.run
        assert container.cid is not None
        cid = container.cid
        ended = threading.Event()
        status: list[ExitStatus] = []
        lost: list[str] = []

        def wait() -> None:
            try:
                status.append(container.wait(None)[0])
            except (EngineLost, EngineError) as exc:
                lost.append(str(exc))
            finally:
                ended.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        i = 0
        while i < len(self.values):
            v = self.values[i]
            end = self._status(v)
            if end is not None:
                self._finished(v, *end)
                i += 1
                continue
            if ended.is_set():
                end = self._status(v)  # written just before the container ended
                if end is None:
                    break
                continue
            self._watchdog(v, cid)
            ended.wait(POLL_S)
        waiter.join()
        container.drain()
        rest = self.values[i:]
        if not rest:
            return []
        cancelled = run.tracker.cancelled.is_set()
        self.said.poll()
        charged = rest[0] if (rest[0].name in self.said.started or not cancelled) else None
        if charged is not None:
            self._died(charged, status[0] if status else None, lost, driver_log)
            rest = rest[1:]
        if cancelled or run.stopping():
            return []  # never started: no record, counted as not started
        return [v.shard for v in rest]

    # -- one value ---------------------------------------------------------------------

    def _status(self, v: Value) -> tuple[int, int, float, float] | None:
        """(exit status, OOM kills, started, ended) once the driver said the value ended."""
        if v.name not in self.said.ended:
            self.said.poll()
        if v.name not in self.said.ended:
            return None
        code, ooms, ended = self.said.ended[v.name]
        return code, ooms, self.said.started.get(v.name, ended), ended

    def _watchdog(self, v: Value, cid: str) -> None:
        """Stop the container when a value outlives its timeout by far (a `timeout` that
        did not act): the value is charged with it. Timed on this process's monotonic
        clock from when the batch saw the value start, not from the file's wall-clock time."""
        timeout = v.inv.limits.timeout_s
        if timeout is None:
            return
        if v.shard.index not in self.began:
            self.said.poll()
            if v.name not in self.said.started:
                return
            self.began[v.shard.index] = time.monotonic()
        if time.monotonic() - self.began[v.shard.index] > timeout + self.run.record.grace_s + 30:
            with contextlib.suppress(EngineError):
                self.run.services.engine.stop(cid, grace_s=self.run.record.grace_s)

    def _log(self, v: Value) -> tuple[list[str], list[str]]:
        """The value's saved log from its two files (stdout first), then the files go;
        returns its last lines and its last stderr lines."""
        files = self.said.files.get(v.name, v.name)  # said with its start, seen by now
        if files is None:  # printed nothing (status.py): its files are the next value's
            self.run.log_sink(v.shard.index, 1).finish()
            return [], []
        out, err = (self.root / "state" / f"{files}.{ext}" for ext in ("out", "err"))
        if size(out) == 0 and not size(err):  # the Python driver's empty files: a rename
            path = self.run.services.store.log_path(self.run.id, v.shard.index)
            with contextlib.suppress(OSError):
                path.with_name(path.name + ".1").unlink(missing_ok=True)  # as LogSink does
                os.replace(out, path)
                return [], []
        log = self.run.log_sink(v.shard.index, 1)
        for stream, part in (("stdout", out), ("stderr", err)):
            if size(part):
                with part.open("rb") as f:
                    while block := f.read(1 << 16):
                        log.write(stream, block)
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        log.finish()
        return list(log.tail), list(log.stderr_tail)

    def _finished(self, v: Value, code: int, ooms: int, started: float, ended: float) -> None:
        run = self.run
        tail, stderr_tail = self._log(v)
        timeout = v.inv.limits.timeout_s
        timed_out = timeout is not None and code in (124, 137) and ended - started >= timeout * 0.98
        a = Attempt(
            number=1,
            started_at=started,
            ended_at=ended,
            container_id=self.cid,
            exit_code=code,
            oom_killed=ooms > 0,
            log_tail=tail,
            stderr_tail=stderr_tail,
            trace=self._figures(ended - started),
        )
        a = classify(
            a,
            timed_out=timed_out,
            cancelled=run.tracker.cancelled.is_set(),
            timeout_s=timeout,
            engine_error="",
        )
        if a.ok:
            a = run.outputs.commit(a, v.inv, v.staging)
        self._settle(v, a)

    def _died(
        self, v: Value, status: ExitStatus | None, lost: list[str], driver_log: LogSink
    ) -> None:
        """Charge the value that was running with its container's end."""
        run, now = self.run, self.run.services.clock()
        tail, stderr_tail = self._log(v)
        self.said.poll()
        started = self.said.started.get(v.name, now)
        a = Attempt(
            number=1,
            started_at=started,
            ended_at=now,
            container_id=self.cid,
            log_tail=tail or list(driver_log.tail),
            stderr_tail=stderr_tail or list(driver_log.stderr_tail),
            trace=self._figures(now - started),
        )
        if status is None:
            a = replace(a, failure=Failure.ENGINE_LOST, message="; ".join(lost), counted=False)
        else:
            a = classify(
                replace(a, exit_code=status.exit_code, oom_killed=status.oom_killed),
                timed_out=False,
                cancelled=run.tracker.cancelled.is_set(),
                timeout_s=None,
                engine_error=status.error,
            )
            if a.ok:  # the driver ended well but this value never reported
                a = replace(a, failure=Failure.ENGINE_ERROR, message="the batch ended early")
            a = replace(a, message=f"{a.message} (the batch container ended)")
        self._settle(v, a)

    def _figures(self, wall_s: float) -> AttemptTrace | None:
        """A value's trace: its own wall time, and its batch container's figures so far."""
        return None if self.sampler is None else self.sampler.snapshot(wall_s=wall_s, packed=True)

    def _settle(self, v: Value, a: Attempt) -> None:
        """Record the value, or keep it for a retry in its own container after the batch."""
        run = self.run
        self.settled.add(v.shard.index)
        run.started(v.shard)
        retry = should_retry(run.policy, a, int(a.counted)) and not run.tracker.cancelled.is_set()
        run.retrying(v.shard, a, retry)
        if retry:
            self.retries.append((v, a))
        else:
            run.end_shard(v.shard, v.base, [a], v.staging, durable=False)
            self.unsynced.append(run.services.store.shard_path(run.id, v.shard.index))

    def _retry(self, v: Value, first: Attempt) -> None:
        """The other attempts of a failed value, each in its own container as unpacked."""
        run, index = self.run, v.shard.index
        staging_dir = run.services.store.staging(run.id, index)
        if first.counted:
            run.services.sleep_for(run.tracker)(backoff_s(run.policy, 1))
        left = max(1, run.policy.max_attempts - int(first.counted))
        with run.services.slots or contextlib.nullcontext():
            more = run_with_retries(
                run.services.engine,
                v.inv,
                run.policy.model_copy(update={"max_attempts": left}),
                secrets=run.services.secrets,
                tracker=run.tracker,
                clock=run.services.clock,
                timer=run.services.timer,
                sleep=run.services.sleep_for(run.tracker),
                log_for=lambda n: run.log_sink(index, n + 1),
                before=lambda: run.outputs.prepare(staging_dir, v.inv),
                after=lambda a: run.outputs.commit(a, v.inv, staging_dir),
                on_attempt=lambda a, retry: run.retrying(v.shard, a, retry),
                grace_s=run.record.grace_s,
            )
        attempts = [first, *(replace(a, number=a.number + 1) for a in more)]
        run.end_shard(v.shard, v.base, attempts, staging_dir)
