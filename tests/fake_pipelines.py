"""Small pipelines written into a tmp folder and run on the FakeEngine, for the DAG rules.

Every module runs the image ID the fake knows, pinned without a pull. A job's run id is
`<pipeline run>.<job>`, so the fake's invocations and events name their job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fakes import FakeEngine, Outcome

from containerexec.model.invocation import Invocation
from containerexec.model.pipeline import Plan
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.store.tree import RunStore

IMAGE = "sha256:" + "f" * 64
ENV = f"environment: {{image: '{IMAGE}', pull: never}}"
MODULES = {
    # one folder in, one folder out
    "step.yaml": f"""name: step
{ENV}
inputs: {{src: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [step, "${{{{inputs.src}}}}", "${{{{outputs.out}}}}"]
""",
    # two folders in, one file out (the fake writes the file the argv names)
    "join.yaml": f"""name: join
{ENV}
inputs: {{left: {{type: directory}}, right: {{type: directory}}}}
outputs: {{out: {{type: file, path: joined.txt}}}}
command: [join, "${{{{inputs.left}}}}", "${{{{inputs.right}}}}", "${{{{outputs.out}}}}"]
""",
    # one shard per file of the folder
    "each.yaml": f"""name: each
{ENV}
inputs: {{src: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [each, "${{{{inputs.src}}}}/${{{{shard.value}}}}", "${{{{outputs.out}}}}"]
array: {{glob: {{input: src, pattern: "*.txt"}}}}
""",
    # three shards, their number not tied to any input
    "fan.yaml": f"""name: fan
{ENV}
inputs: {{src: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [fan, "${{{{inputs.src}}}}", "${{{{outputs.out}}}}", "${{{{shard.index}}}}"]
array: {{range: 3, max_parallel: 3}}
""",
}


def job_of(inv_or_run_id: Invocation | str) -> str:
    run_id = inv_or_run_id if isinstance(inv_or_run_id, str) else inv_or_run_id.run_id
    return run_id.rsplit(".", 1)[1]


def by_job(**outcomes: Outcome) -> Callable[[Invocation, int], Outcome]:
    """A fake script: each job's Outcome by job name; the others succeed."""
    return lambda inv, n: outcomes.get(job_of(inv), Outcome())


class StepClock:
    """A clock that moves one second each time it is read: times are distinct and ordered."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class Gate:
    """An event that opens once `n` fake containers run at once, or after `limit_s` anyway
    (so a scheduler that never overlaps them fails the test instead of hanging it)."""

    def __init__(self, engine: FakeEngine, n: int, limit_s: float = 5.0) -> None:
        self.event = threading.Event()
        self.engine = engine
        self.n = n
        self.timer = threading.Timer(limit_s, self.event.set)
        self.timer.daemon = True
        self.timer.start()
        engine.on_start = self._started

    def _started(self, inv: Invocation) -> None:
        with self.engine.lock:
            if self.engine.running >= self.n:
                self.event.set()

    def outcome(self) -> Outcome:
        return Outcome(hold=self.event)

    def close(self) -> None:
        self.timer.cancel()


class Kit:
    """A tmp folder with the modules above, a seed folder, and a runs folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name, text in MODULES.items():
            (root / name).write_text(text)
        self.seed = root / "seed"
        self.seed.mkdir()
        (self.seed / "a.txt").write_text("alpha\n")
        self.other = root / "other"
        self.other.mkdir()
        (self.other / "b.txt").write_text("beta\n")
        self.store = RunStore(root / "runs")

    def plan(self, text: str, name: str = "p.yaml") -> Plan:
        (self.root / name).write_text(text)
        return check_pipeline(self.root / name)

    def orchestrator(self, engine: FakeEngine, **options: Any) -> Orchestrator:
        """The cache is off unless asked for: alike jobs of one pipeline would share entries."""
        options.setdefault("clock", StepClock())
        options.setdefault("cache", False)
        options.setdefault("max_containers", 8)
        return Orchestrator(engine, self.store, **options)

    def run(
        self,
        engine: FakeEngine,
        plan: Plan,
        outputs: Mapping[str, str] | None = None,
        *,
        orchestrator: Orchestrator | None = None,
        **options: Any,
    ) -> PipelineResult:
        orch = orchestrator or self.orchestrator(engine, **options)
        inputs = {n: str(getattr(self, n)) for n in plan.pipeline.inputs}
        started = time.monotonic()
        result = orch.run(plan, inputs, outputs or {}, base=self.root)
        assert time.monotonic() - started < 8, "a fake pipeline took too long"
        return result


def started_jobs(engine: FakeEngine) -> list[str]:
    """Jobs in the order their first container started."""
    seen: list[str] = []
    for kind, run_id, _ in engine.events:
        if kind == "start" and job_of(run_id) not in seen:
            seen.append(job_of(run_id))
    return seen


def first(engine: FakeEngine, kind: str, job: str) -> int:
    """Index in engine.events of the job's first `kind` ('start' | 'exit')."""
    return next(i for i, e in enumerate(engine.events) if e[0] == kind and job_of(e[1]) == job)


def last(engine: FakeEngine, kind: str, job: str) -> int:
    hits = [i for i, e in enumerate(engine.events) if e[0] == kind and job_of(e[1]) == job]
    return hits[-1]


DIAMOND = """name: diamond
inputs: {seed: {type: directory}}
outputs: {result: "${{jobs.d.outputs.out}}"}
jobs:
  a: {module: step.yaml, inputs: {src: "${{inputs.seed}}"}}
  b: {module: step.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
  c: {module: step.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
  d: {module: join.yaml, inputs: {left: "${{jobs.b.outputs.out}}",
                                  right: "${{jobs.c.outputs.out}}"}}
"""

# Two independent branches: bad -> after_bad, good -> after_good.
BRANCHES = """name: branches
inputs: {seed: {type: directory}}
outputs: {bad_out: "${{jobs.after_bad.outputs.out}}", good_out: "${{jobs.after_good.outputs.out}}"}
jobs:
  bad: {module: step.yaml, inputs: {src: "${{inputs.seed}}"}}
  good: {module: step.yaml, inputs: {src: "${{inputs.seed}}"}}
  after_bad: {module: step.yaml, inputs: {src: "${{jobs.bad.outputs.out}}"}}
  after_good: {module: step.yaml, inputs: {src: "${{jobs.good.outputs.out}}"}}
"""


def independent(n: int, module: str = "step.yaml") -> str:
    """A pipeline of n jobs j0..j{n-1} that all read the seed and need nothing else."""
    jobs = "\n".join(
        f'  j{i}: {{module: {module}, inputs: {{src: "${{{{inputs.seed}}}}"}}}}' for i in range(n)
    )
    return f"name: flat\ninputs: {{seed: {{type: directory}}}}\njobs:\n{jobs}\n"


def chain(*names: str, module: str = "step.yaml") -> str:
    """A pipeline names[0] -> names[1] -> ...; the first reads the seed; the last is `result`."""
    jobs = []
    src = "${{inputs.seed}}"
    for name in names:
        jobs.append(f'  {name}: {{module: {module}, inputs: {{src: "{src}"}}}}')
        src = f"${{{{jobs.{name}.outputs.out}}}}"
    return (
        "name: chain\ninputs: {seed: {type: directory}}\n"
        f'outputs: {{result: "${{{{jobs.{names[-1]}.outputs.out}}}}"}}\n'
        "jobs:\n" + "\n".join(jobs) + "\n"
    )
