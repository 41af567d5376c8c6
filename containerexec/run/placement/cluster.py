"""ArrayPlacement: any cluster that runs job arrays, behind the Placement seam.

What every cluster backend shares lives here and in follower.py: an image the nodes
can pull by digest (or one pushed for them with --push-to), the run's jobs in its
SchedulerRecord, a resume refused while one of them is active, and --detach.
A backend (slurm/, a later kubernetes/) implements only ArrayBackend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from containerexec.engine.base import Engine
from containerexec.environment import images
from containerexec.environment.sharing import split_target
from containerexec.errors import ImageError
from containerexec.run.placement.base import ArrayBackend, refuse_live_jobs
from containerexec.run.placement.follower import ArrayFollower
from containerexec.store.records import RunRecord, SchedulerRecord

if TYPE_CHECKING:
    from containerexec.run.context import RunContext, Task


@dataclass
class ArrayPlacement:
    """Submits a run's shards as job arrays of `backend` and follows them to their end."""

    backend: ArrayBackend
    engine: Engine | None = None  # for --push-to
    push_to: str | None = None
    detach: bool = False
    sleep: Callable[[float], object] = time.sleep
    notice: Callable[[str], None] | None = None  # progress for the user: push, submit, job id

    def admit(self, record: RunRecord) -> RunRecord:
        """Refuse (or push, with --push-to) an image the nodes could not pull by digest."""
        image = record.image
        if self.push_to:
            assert self.engine is not None, "--push-to needs the engine"
            repo, tag = split_target(record.module, self.push_to)
            self.engine.tag(image.id, repo, tag)
            self._say(f"pushing {image.pinned} to {repo}:{tag} ...")
            digest = images.push_with_retries(
                self.engine, record.module, repo, tag, sleep=self.sleep
            )
            pinned = f"{repo}@{digest}"
            image = image.model_copy(update={"pinned": pinned, "digest": pinned})
        elif image.digest is None:
            raise ImageError(
                record.module,
                image.pinned,
                f"a local image ({image.source}, never pushed) that {self.backend.title}'s "
                f"nodes cannot pull; push it first (containerexec push SPEC "
                f"REGISTRY/REPO:TAG) and name it in the spec, or run again with "
                f"--push-to REGISTRY/REPO[:TAG]",
            )
        # A resumed run keeps its earlier jobs: job-N.sh and batches-N.json count on.
        kind = self.backend.kind
        sched = record.scheduler if record.scheduler and record.scheduler.kind == kind else None
        return record.model_copy(
            update={"image": image, "scheduler": sched or SchedulerRecord(kind=kind)}
        )

    def resumable(self, prev: RunRecord) -> None:
        """Refuse to resume a run while one of its jobs has a task pending or running: the
        new tasks would race the old ones for the same shards. Nothing is cancelled."""
        refuse_live_jobs(self.backend, prev)

    def run(self, run: RunContext, tasks: list[Task], parallel: int) -> None:
        follower = ArrayFollower(
            self.backend,
            run,
            parallel,
            tasks,
            detach=self.detach,
            sleep=self.sleep,
            notice=self.notice,
        )
        follower.follow([shard for task in tasks for shard in task])

    def _say(self, text: str) -> None:
        if self.notice is not None:
            self.notice(text)
