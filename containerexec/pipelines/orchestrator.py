"""Run a planned pipeline on one engine: ready jobs on a pool, one container limit, one record.

Each job is one Run of one shared Executor, whose semaphore keeps the shards of all
jobs together under `max_containers` containers.
Intermediate outputs live in `<runs-dir>/pipelines/<id>/jobs/<job>/<output>`;
pipeline outputs are copied to their -o places at the end, each in one rename, and
written to the delivery ledger, so the same command run again may replace them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import graphlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from containerexec.engine.base import Engine
from containerexec.errors import ContainerExecError
from containerexec.labels import LABEL_PIPELINE_RUN
from containerexec.model.names import job_run_suffix
from containerexec.model.pipeline import ModuleLoader, PipelineSpec, Plan, render_template
from containerexec.model.pipelinecheck import plan
from containerexec.model.spec import ModuleSpec
from containerexec.pipelines.binding import bind_inputs, bind_outputs
from containerexec.pipelines.record import (
    JobEvent,
    JobRecord,
    JobState,
    PipelineRecord,
    PipelineResult,
)
from containerexec.run import staging
from containerexec.run.cache import Cache
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.placement.base import Placement as Scheduler
from containerexec.run.results import RunResult, ShardEvent
from containerexec.store import files
from containerexec.store.deliveries import Deliveries
from containerexec.store.records import RunState, write_json
from containerexec.store.tree import RunStore, new_run_id

# (job name, its inputs) -> the job's spec made with them, or None to keep the planned one
Respec = Callable[[str, Mapping[str, Any]], ModuleSpec | None]


class Orchestrator:
    """Runs the jobs of a Plan as their inputs become ready; cancel() stops all of them."""

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        *,
        max_workers: int = 4,
        max_containers: int | None = None,
        keep_going: bool = False,
        cache: bool = True,
        secrets: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        pull: str | None = None,
        grace_s: float = 5.0,
        on_event: Callable[[JobEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        overwrite: bool = False,
        respec: Respec | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        """`overwrite` lets a non-empty -o place be replaced when the outputs are placed;
        `respec` makes a job's spec again once its inputs exist (a ContainerModule's
        array() is evaluated then, with the job's own inputs, as stopes does);
        `scheduler` is where every job's shards run (a Slurm placement, say; default here)."""
        self.engine = engine
        self.respec = respec
        self.overwrite = overwrite
        self.store = store
        self.deliveries = Deliveries(store.deliveries)  # what -o places hold, for reruns
        self.max_workers = max(1, max_workers)
        self.max_containers = max(1, max_containers or os.cpu_count() or 1)
        self.keep_going = keep_going
        self.secrets = dict(secrets or {})
        self.labels = dict(labels or {})
        self.pull = pull
        self.grace_s = grace_s
        self.on_event = on_event or (lambda e: None)
        self.clock = clock
        self.signal: int | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        # One executor for every job: one engine-wide container limit, one cancel.
        self.executor = Executor(
            engine,
            store,
            secrets=self.secrets,
            cache=Cache(store.cache) if cache else None,
            slots=threading.BoundedSemaphore(self.max_containers),
            on_event=self._shard_event,
            scheduler=scheduler,
        )
        self._job_of: dict[str, str] = {}  # run id -> job

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Start no new job and cancel every running one. Safe from a signal handler."""
        if self.signal is None:
            self.signal = signum
        self._cancelled.set()
        self.executor.cancel(signum)

    def _shard_event(self, e: ShardEvent) -> None:
        # Shard events of all jobs come through the one executor; each names its run.
        job = self._job_of.get(e.run_id or "")
        if job is not None:
            self.on_event(JobEvent(job, "shard", shard=e))

    def run(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, str],
        *,
        base: Path | None = None,
        run_id: str | None = None,
    ) -> PipelineResult:
        """Bind the pipeline's inputs and -o places, run every job it can, place the outputs."""
        values = bind_inputs(plan, inputs, base or Path.cwd())
        targets = bind_outputs(plan, outputs, base or Path.cwd(), values)
        pid = run_id or new_run_id(plan.pipeline.name, self.clock())
        where = f"pipeline '{plan.pipeline.name}'"
        # The -o places are this run's until it ends (another run writing there is refused at
        # once); they are placed at the end by copy-then-rename: old content goes only then.
        with (
            staging.claimed(self.store, pid, targets, where, overwrite=self.overwrite) as claim,
            contextlib.closing(claim),
        ):
            return self._run(plan, values, targets, pid)

    def _run(
        self, plan: Plan, values: Mapping[str, Any], targets: Mapping[str, str], pid: str
    ) -> PipelineResult:
        self.dir = self.store.pipeline_dir(pid)
        self.record = PipelineRecord(
            id=pid,
            name=plan.pipeline.name,
            version=plan.pipeline.version,
            pipeline_path=plan.path,
            state="running",
            inputs=values,
            outputs={
                n: targets.get(n) or str(self._job_output(s.name, s.output))
                for n, s in plan.outputs.items()
            },
            jobs={n: JobRecord(module=j.module.name) for n, j in plan.jobs.items()},
            max_workers=self.max_workers,
            max_containers=self.max_containers,
            keep_going=self.keep_going,
            cache=self.executor.cache is not None,
            started_at=self.clock(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        self.runs: dict[str, RunResult] = {}
        self._write()
        try:
            self._schedule(plan, values)
        except BaseException as exc:
            # Not a job failure (those are recorded by _run_job): a bug, or an interrupt.
            # pipeline.json must still end, or it says 'running' after the process is gone.
            self._end_abruptly(exc)
            raise
        placed = self._place(plan, targets)
        failed = any(j.state == "failed" for j in self.record.jobs.values())
        state: RunState
        if self._cancelled.is_set():
            state = "cancelled"
        else:
            state = "failed" if failed else "succeeded"
        signum = self.signal if state == "cancelled" else None
        self._update(state=state, signal=signum, ended_at=self.clock(), outputs_placed=placed)
        return PipelineResult(self.record, self._write(), self.runs)

    def _end_abruptly(self, exc: BaseException) -> None:
        """Record the end of a run that _schedule left by an exception: the job that raised
        failed with its error, the jobs not started are cancelled, the run has ended."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        why = f"stopped by an unexpected error: {type(exc).__name__}: {exc}"
        for name, job in self.record.jobs.items():
            if job.state == "running":
                update = {"state": "cancelled" if interrupted else "failed", "message": why}
                self._job(name, **update, ended_at=self.clock())
            elif job.state == "pending":
                self._job(name, state="cancelled", message="cancelled before it started")
        state: RunState = "cancelled" if interrupted else "failed"
        self._update(
            state=state, signal=self.signal if interrupted else None, ended_at=self.clock()
        )
        self._write()

    def _schedule(self, plan: Plan, values: Mapping[str, Any]) -> None:
        ts = graphlib.TopologicalSorter({n: j.needs for n, j in plan.jobs.items()})
        ts.prepare()
        order = list(plan.jobs)
        ready: list[str] = []
        blocked: dict[str, str] = {}  # job -> why it will not run
        running: dict[cf.Future[None], str] = {}
        with cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix="job") as pool:
            while True:
                ready = sorted([*ready, *ts.get_ready()], key=order.index)
                while ready and not self._cancelled.is_set() and len(running) < self.max_workers:
                    name = ready.pop(0)
                    if name in blocked:
                        self._job(name, state="skipped", message=blocked[name])
                        self.on_event(JobEvent(name, "skipped", "skipped", message=blocked[name]))
                        ts.done(name)
                        ready = sorted([*ready, *ts.get_ready()], key=order.index)
                        continue
                    running[pool.submit(self._run_job, plan, name, values)] = name
                if not running:
                    break
                done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    try:
                        fut.result()
                    except BaseException:
                        self.cancel()
                        cf.wait(running)
                        raise
                    ts.done(name)
                    if self.record.jobs[name].state != "succeeded":
                        why = f"not started: job '{name}' {self.record.jobs[name].state}"
                        later = plan.downstream(name) if self.keep_going else set(plan.jobs)
                        blocked |= {j: why for j in later if j not in blocked}
        for name, job in self.record.jobs.items():
            if job.state == "pending":
                cancelled = self._cancelled.is_set()
                why = "cancelled before it started" if cancelled else blocked.get(name, "")
                self._job(name, state="cancelled" if cancelled else "skipped", message=why)

    def _run_job(self, plan: Plan, name: str, values: Mapping[str, Any]) -> None:
        job = plan.jobs[name]
        run_id = f"{self.record.id}.{job_run_suffix(name)}"
        self._job(name, state="running", run_id=run_id, started_at=self.clock())
        self.on_event(JobEvent(name, "started", "running"))
        self._job_of[run_id] = name
        try:
            opts = RunOptions(
                pipeline_run=self.record.id,
                run_id=run_id,
                pull=self.pull,
                grace_s=self.grace_s,
                labels={**self.labels, LABEL_PIPELINE_RUN: self.record.id},
                default_outputs=self.dir / "jobs" / name,
            )
            inputs = self._job_inputs(plan, name, values)
            spec = (self.respec(name, inputs) if self.respec else None) or job.module
            run = self.executor.start(
                spec,
                inputs,
                {},
                base=plan.spec_dir,
                spec_path=job.module_path,
                options=opts,
            )
            result = run.wait()
        except ContainerExecError as exc:
            self._job(name, state="failed", message=str(exc), ended_at=self.clock())
            self.on_event(JobEvent(name, "finished", "failed", message=str(exc)))
            return
        self.runs[name] = result
        for out_name, port in job.module.outputs.items():
            if port.type == "directory" and result.record.state == "succeeded":
                Path(result.record.outputs[out_name]).mkdir(parents=True, exist_ok=True)
        shards = self.store.load_shards(run_id)
        n_cached = sum(1 for s in shards.values() if s.cached)
        state: JobState = result.record.state
        message = _job_message(state, len(result.failed), run_id)
        self._job(
            name,
            state=state,
            exit_code=result.record.exit_code,
            ended_at=self.clock(),
            shards=len(shards),
            shards_cached=n_cached,
            message=message,
            cached=bool(shards) and n_cached == len(shards),
            outputs=result.record.outputs,
        )
        self.on_event(JobEvent(name, "finished", state, message=message))

    def _job_inputs(self, plan: Plan, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for in_name, src in plan.jobs[name].inputs.items():
            if src.kind == "literal":
                out[in_name] = src.value
            elif src.kind == "job":
                out[in_name] = str(self._job_output(src.name, src.output))
            elif src.kind == "input" and src.name in values:
                out[in_name] = values[src.name]
            elif src.kind == "template":
                with contextlib.suppress(KeyError):  # an unset optional input drops it
                    out[in_name] = render_template(str(src.value), values)
        return out

    def _job_output(self, job: str, output: str) -> Path:
        return self.dir / "jobs" / job / output

    def _place(self, plan: Plan, targets: Mapping[str, str]) -> list[str]:
        placed = []
        for name, src in plan.outputs.items():
            if name in targets and self.record.jobs[src.name].state == "succeeded":
                files.copy_then_rename(self._job_output(src.name, src.output), Path(targets[name]))
                self.deliveries.record_tree(Path(targets[name]), self.record.id)
                placed.append(name)
        return placed

    def _job(self, name: str, **update: Any) -> None:
        with self._lock:
            jobs = dict(self.record.jobs)
            jobs[name] = jobs[name].model_copy(update=update)
            self.record = self.record.model_copy(update={"jobs": jobs})
            self._write()

    def _update(self, **update: Any) -> None:
        with self._lock:
            self.record = self.record.model_copy(update=update)

    def _write(self) -> Path:
        path = self.dir / "pipeline.json"
        write_json(path, self.record.model_dump(mode="json"))
        return path


def run_pipeline(
    engine: Engine,
    store: RunStore,
    pipeline: PipelineSpec | Plan,
    spec_dir: Path,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, str],
    *,
    max_workers: int = 4,
    max_containers: int | None = None,
    keep_going: bool = False,
    cache: bool = True,
    load_module: ModuleLoader | None = None,
    **options: Any,
) -> PipelineResult:
    """Check `pipeline`, run it, and place its outputs; `options` go to Orchestrator."""
    planned = (
        pipeline
        if isinstance(pipeline, Plan)
        else plan(pipeline, spec_dir, load_module=load_module)
    )
    orchestrator = Orchestrator(
        engine,
        store,
        max_workers=max_workers,
        max_containers=max_containers,
        keep_going=keep_going,
        cache=cache,
        **options,
    )
    return orchestrator.run(planned, inputs, outputs)


def _job_message(state: JobState, n_failed: int, run_id: str) -> str:
    """The line pipeline.json and the display give a job that did not succeed."""
    if state == "succeeded":
        return ""
    if state == "cancelled":  # its failed shards, if any, were stopped by the cancel
        return f"cancelled while it ran; containerexec runs show {run_id}"
    return f"{n_failed} shard(s) failed; containerexec runs show {run_id}"
