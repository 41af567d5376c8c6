"""Whether a run or a pipeline run is still being run by a live process, and waiting
until it is not: an export taken meanwhile would be a silent partial snapshot.

A run is live while its state is 'running' and its lock (store/tree.py RunLock, an
flock the kernel drops when the holder dies) is held. A pipeline run has no lock of
its own: it is live while its state is 'running' and one of its job runs is live, or
its recorded process is alive on this host (between two jobs no job lock is held).
A run whose owner died is not live: it is exported as it was left ('interrupted'),
unless `elsewhere` (the CLI's Slurm check for a detached run) says tasks still run it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from containerexec.errors import UsageError
from containerexec.pipelines.record import PipelineRecord
from containerexec.store.records import RunRecord, load_model
from containerexec.store.tree import RunStore

# A run no process holds -> where it still runs ("Slurm job 12"), or None.
Elsewhere = Callable[[RunRecord], str | None]
FIRST_POLL_S = 0.2
MAX_POLL_S = 2.0  # --wait notices the end within this long


class StillRunning(UsageError):
    """`runs export` of a run that a live process still runs (exit 2)."""

    def __init__(self, what: str, pid: int | None, host: str, where: str = "") -> None:
        self.what = what
        self.pid = pid
        self.host = host
        self.where = where
        super().__init__(f"{self.summary()}; wait for it, or pass --wait")

    def summary(self) -> str:
        """'run X is still running (pid N on HOST)', or '(Slurm job N)'."""
        holder = f"pid {self.pid}" if self.pid else "another process"
        on = f" on {self.host}" if self.host else ""
        return f"{self.what} is still running ({self.where or holder + on})"


def still_running(
    store: RunStore, target: str, pipeline: str | None, elsewhere: Elsewhere | None = None
) -> StillRunning | None:
    """The refusal to export `target` (a run id, or the pipeline run `pipeline`) while it
    runs; None once nothing runs it."""
    if pipeline is not None:
        rec = load_model(store.pipeline_dir(pipeline) / "pipeline.json", PipelineRecord)
        if rec.state != "running":
            return None
        jobs = [j.run_id for j in rec.jobs.values() if j.run_id is not None]
        if any(store.lock(r).held() for r in jobs) or _alive_here(rec.host, rec.pid):
            return StillRunning(f"pipeline run '{pipeline}'", rec.pid or None, rec.host)
        return None
    run = store.load_run(target)
    lock = store.lock(run.run_id)
    if run.state != "running":
        return None
    if not lock.held():
        where = elsewhere(run) if elsewhere is not None else None
        return StillRunning(f"run '{run.run_id}'", None, run.host, where) if where else None
    try:
        holder = lock.path.read_text().strip()
    except OSError:
        holder = ""
    pid = int(holder) if holder.isdigit() else run.pid or None
    return StillRunning(f"run '{run.run_id}'", pid, run.host)


def wait_until_ended(
    store: RunStore,
    target: str,
    pipeline: str | None,
    elsewhere: Elsewhere | None = None,
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """Poll until `target` is not running (FIRST_POLL_S, growing to MAX_POLL_S); returns
    the number of polls that found it running. Ctrl-C (KeyboardInterrupt) stops it."""
    delay, polls = FIRST_POLL_S, 0
    while still_running(store, target, pipeline, elsewhere) is not None:
        polls += 1
        sleep(delay)
        delay = min(delay * 1.5, MAX_POLL_S)
    return polls


def _alive_here(host: str, pid: int) -> bool:
    """Whether process `pid` lives, when it ran on this host (another host's is unknown)."""
    if pid <= 0 or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
