"""Where a run's shards run: the seam. LocalPool runs them here, on a pool of worker threads.

A scheduler gets a Run and the shards still to do, and returns when every one has
ended or the run stops (cancelled, or too many shards failed). Each shard goes
through `Run.run_shard`, here or in another process: a cluster scheduler submits
an array whose tasks call `containerexec worker RUN_DIR --shard K` (Executor.work)
on their node, and follows the shard records the tasks write.
"""

from __future__ import annotations

from typing import Protocol

from containerexec.run.context import RunContext, Task
from containerexec.run.packing import batch
from containerexec.store.records import RunRecord


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

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        """Run every task of `tasks` unless `run.stopping()`; return when all have ended.

        A task is the shards one container runs (run/packing/planner.py; one shard: unpacked).
        Each shard must end with its record written by `run.run_shard` (or
        `run.run_shard_safely`, or run/packing/batch.py for a packed task); containers stop
        when `run.cancel()` is called.
        """
        ...


class LocalPool:
    """`parallel` worker threads on this machine, pulling shards from one queue in order."""

    def admit(self, record: RunRecord) -> RunRecord:
        # This machine's engine has the image; a resumed cluster run now runs here.
        return record.model_copy(update={"scheduler": None})

    def resumable(self, prev: RunRecord) -> None:
        pass

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        batch.run_tasks(run, tasks, parallel)
