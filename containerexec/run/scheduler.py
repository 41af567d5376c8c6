"""Where a run's shards run: the seam. LocalPool runs them here, on a pool of worker threads.

A scheduler gets a Run and the shards still to do, and returns when every one has
ended or the run stops (cancelled, or too many shards failed). Each shard goes
through `Run.run_shard`, here or in another process: a cluster scheduler submits
an array whose tasks call `containerexec worker RUN_DIR --shard K` (Executor.work)
on their node, and follows the shard records the tasks write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from containerexec.model.arrays import Shard
from containerexec.run import packing
from containerexec.store.records import RunRecord

if TYPE_CHECKING:
    from containerexec.run.run import Run


class Scheduler(Protocol):
    """Runs shards of a Run, at most `parallel` at once."""

    def admit(self, record: RunRecord) -> RunRecord:
        """Check (or prepare) a run before anything starts; may raise, or update the record
        (a cluster scheduler refuses an image its nodes cannot pull, or pushes it)."""
        ...

    def resumable(self, prev: RunRecord) -> None:
        """Raise when the run recorded as `prev` cannot be resumed yet (a cluster job of
        its still runs); called before anything of a resume touches the run."""
        ...

    def run(self, run: Run, todo: list[Shard], parallel: int) -> None:
        """Run every shard of `todo` unless `run.stopping()`; return when all have ended.

        Each shard must end with its record written by `run.run_shard` (or
        `run.run_shard_safely`); containers stop when `run.cancel()` is called.
        """
        ...


class LocalPool:
    """`parallel` worker threads on this machine, pulling shards from one queue in order."""

    def admit(self, record: RunRecord) -> RunRecord:
        # This machine's engine has the image; a resumed cluster run now runs here.
        return record.model_copy(update={"scheduler": None})

    def resumable(self, prev: RunRecord) -> None:
        pass

    def run(self, run: Run, todo: list[Shard], parallel: int) -> None:
        if run.batch_size > 1:  # K values per container (run/packing.py)
            packing.run_packed(run, todo, parallel)
            return
        queue: Iterator[Shard] = iter(todo)
        take = threading.Lock()

        def worker() -> None:
            while not run.stopping():
                with take:
                    shard = next(queue, None)
                if shard is None:
                    return
                run.run_shard_safely(shard)

        packing.in_threads(worker, parallel, "shard-worker")
