"""Packing as a planner: which shards share a container. The one reader of `batch_size`
in the run core.

A run's shards are planned into tasks (run/context.py `Task`): a task is the list
of shards one container runs one after another; a one-shard task runs unpacked,
in a container of its own, as every shard did before packing. Placements (the
local pool, Slurm) receive tasks and never a batch size: a task of more than one
shard goes to run/packing/batch.py, on this machine or on a node.

Before any packed container starts, `ready` checks in one probe that the image
can run the batch driver (run/packing/scripts.py).
"""

from __future__ import annotations

import math
import re

from containerexec.errors import RunError
from containerexec.labels import LABEL_SHARD
from containerexec.model.arrays import Shard
from containerexec.model.invocation import Invocation
from containerexec.model.spec import ModuleSpec
from containerexec.run.context import RunContext, Task
from containerexec.run.logs import LogSink
from containerexec.run.packing import pyvalues
from containerexec.run.packing.scripts import SHELL, TOOLS, output_links
from containerexec.run.runner import Failure, run_invocation

AUTO_ROUNDS = 2  # 'auto': about this many batches per container slot: few container starts, and
# the last batches still end close together (measured: 2 beat 4 by 1.5x on 1,000 x 50 ms)
AUTO_MAX = 1000  # 'auto' never packs more than this into one container
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PackingUnsupported(RunError):
    """The image (or the spec) cannot run packed shards; said before any shard's container."""

    def __init__(self, module: str, image: str, problem: str) -> None:
        self.module = module
        self.image = image
        self.problem = problem
        super().__init__(
            f"module '{module}': packing shards into containers (array.batch_size) needs "
            f"a POSIX shell at {SHELL} with {', '.join(f'`{t}`' for t in TOOLS)}, and `ln` "
            "(outputs) and `timeout` "
            f"(resources.timeout) in the image '{image}': {problem}. Run it unpacked "
            "instead: --batch-size 1, or remove array.batch_size from the spec"
        )


def choose(spec: ModuleSpec, todo: int, parallel: int) -> int:
    """Shard values per container for `todo` shards on `parallel` containers (1: unpacked)."""
    asked = spec.array.batch_size if spec.array is not None else None
    if asked is None or todo <= 1:
        return 1
    if asked == "auto":
        return max(1, min(AUTO_MAX, math.ceil(todo / (max(parallel, 1) * AUTO_ROUNDS))))
    return max(1, min(int(asked), todo))


def plan(todo: list[Shard], size: int) -> list[Task]:
    """`todo` in tasks of `size` shards, in order."""
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def tasks(
    spec: ModuleSpec, todo: list[Shard], parallel: int, *, packable: bool = True
) -> list[Task]:
    """The tasks of a run: `todo` packed as the spec asks, or one shard a task when it asks
    for no packing or the run cannot pack (`packable` False: a replay, --keep, a debugger)."""
    size = choose(spec, len(todo), parallel) if packable else 1
    return plan(todo, size)


def packed(planned: list[Task]) -> bool:
    """Whether any task shares its container between shards."""
    return any(len(t) > 1 for t in planned)


def task_size(planned: list[Task]) -> int:
    """The most shards a task of `planned` runs in one container (1: unpacked)."""
    return max((len(t) for t in planned), default=1)


def regroup(todo: list[Shard], like: list[Task]) -> list[Task]:
    """Shards to run again (a placement lost them, or a dead container did not start
    them) in tasks no larger than those of `like`, in order."""
    return plan(todo, task_size(like))


def check(run: RunContext, inv: Invocation) -> None:
    """What packing needs, checked before any shard's container: env names sh can export,
    and an image with /bin/sh, TOOLS, ln (outputs) and timeout (a timeout), in one probe.
    Python values (pyvalues.py) need none of it.

    Raises:
        PackingUnsupported: saying what is missing and how to run unpacked.
    """
    if pyvalues.shared([inv]):
        return  # run by the image's python3, which the values need anyway: no sh, no tools
    image = run.image.pinned
    bad = [k for k in inv.env if not ENV_NAME.match(k)]
    if bad:
        raise PackingUnsupported(
            run.spec.name, image, f"the env name '{bad[0]}' cannot be set by a shell"
        )
    tools = [*TOOLS, *(["ln"] if output_links(inv) else [])]
    if inv.limits.timeout_s is not None:
        tools.append("timeout")
    script = (
        f'for t in {" ".join(tools)}; do command -v "$t" >/dev/null 2>&1 || '
        "{ printf 'no `%s` in the image\\n' \"$t\"; exit 3; }; done"
    )
    if "timeout" in tools:
        script += "; timeout -k 1 5 true || { echo '`timeout -k 1 5 true` fails'; exit 3; }"
    # A setsid that forks (and returns at once) would let the driver go on while the value
    # still runs: the value's exit status must come back through it.
    script += (
        "; setsid /bin/sh -c 'exit 7' </dev/null & wait $!; [ $? = 7 ] || "
        "{ echo '`setsid` does not wait for its command (busybox without -w?)'; exit 3; }"
    )
    probe = inv.model_copy(
        update={
            "argv": [SHELL, "-c", script],
            "env": {},
            "secret_names": [],
            "mounts": [],
            "name": f"cx-{run.id}-probe",
            "labels": {**inv.labels, LABEL_SHARD: "probe"},
            "limits": inv.limits.model_copy(update={"timeout_s": 60.0}),
        }
    )
    services = run.services
    log = LogSink(services.store.run_dir(run.id) / "batches" / "probe.log")
    try:
        a = run_invocation(
            services.engine, probe, secrets={}, log=log, tracker=run.tracker, clock=services.clock
        )
    finally:
        log.finish()
    if a.ok or a.failure == Failure.CANCELLED:
        return
    if a.failure == Failure.COMMAND_NOT_FOUND:
        problem = f"the image has no {SHELL}"
    elif a.exit_code == 3 and a.log_tail:
        problem = a.log_tail[-1]
    else:
        problem = f"the check `{SHELL} -c 'command -v {' '.join(tools)}'` {a.message}"
    raise PackingUnsupported(run.spec.name, image, problem)


def ready(run: RunContext, todo: list[Shard]) -> None:
    """check() with the first shard's Invocation; on a refusal the run's record says why.

    Raises:
        PackingUnsupported: as check().
    """
    try:
        check(run, run.base_record(todo[0], attempts=[]).invocation)
    except PackingUnsupported as exc:
        run.refused(f"packing_unsupported: {exc.problem}")
        raise
