"""The local placement: a run's shards on a pool of worker threads on this machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from containerexec.model.arrays import Shard
from containerexec.run import packing
from containerexec.run.placement.base import Where, check_resumable
from containerexec.store.records import RunRecord

if TYPE_CHECKING:
    from containerexec.run.run import Run


class LocalPool:
    """`parallel` worker threads on this machine, pulling shards from one queue in order."""

    def admit(self, record: RunRecord) -> RunRecord:
        # This machine's engine has the image; a resumed cluster run now runs here.
        return record.model_copy(update={"scheduler": None})

    def resumable(self, prev: RunRecord) -> None:
        # A run resumed here that a cluster job of its still runs would race that job.
        check_resumable(prev)

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


def make(where: Where) -> LocalPool:
    """The registry's entry point for 'local'."""
    return LocalPool()
