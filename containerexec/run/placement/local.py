"""The local placement: a run's shards on a pool of worker threads on this machine."""

from __future__ import annotations

from containerexec.run.context import RunContext, Task
from containerexec.run.packing import batch
from containerexec.run.placement.base import Where, check_resumable
from containerexec.store.records import RunRecord


class LocalPool:
    """`parallel` worker threads on this machine, pulling tasks from one queue in order."""

    def admit(self, record: RunRecord) -> RunRecord:
        # This machine's engine has the image; a resumed cluster run now runs here.
        return record.model_copy(update={"scheduler": None})

    def resumable(self, prev: RunRecord) -> None:
        # A run resumed here that a cluster job of its still runs would race that job.
        check_resumable(prev)

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        batch.run_tasks(run, tasks, parallel)


def make(where: Where) -> LocalPool:
    """The registry's entry point for 'local'."""
    return LocalPool()
