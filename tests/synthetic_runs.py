"""Run stores made without an engine, for the report's tests and bench/report.py: a large
array's records written with the store's own code, with a resource trace per attempt; and
a pipeline run on the FakeEngine whose jobs end in every state the report's DAG shows.

The trace is added to each attempt's JSON as the runner records it (`AttemptRecord.trace`),
so these stores read the same before and after the record model names that field.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fake_pipelines import Kit, job_of
from fakes import FakeEngine, Outcome

from containerexec.model.invocation import Invocation, Limits
from containerexec.store.records import ImageRecord, RunRecord, ShardRecord, write_json
from containerexec.store.tree import RunStore

IMAGE = "sha256:" + "ab" * 32
LIMIT = 512 << 20
ERRORS = (
    "ValueError: could not parse line 17 of part-{i:05d}.txt",
    "KeyError: 'label'",
    "FileNotFoundError: [Errno 2] No such file or directory: '/data/missing.bin'",
)


def _trace(rng: random.Random, wall: float, peak: int | None) -> dict[str, Any]:
    return {
        "peak_memory_bytes": peak,
        "cpu_seconds": round(wall * rng.uniform(0.3, 0.95), 3),
        "wall_seconds": round(wall, 3),
        "read_bytes": rng.randrange(1 << 20, 64 << 20),
        "write_bytes": None,  # a figure the host could not give stays null
    }


def write_run(
    root: Path,
    n: int,
    *,
    failing: float = 0.05,
    retried: float = 0.05,
    oom: float = 0.01,
    seed: int = 7,
    run_id: str = "big-20260101-000000-abcdef",
) -> str:
    """A failed array run of `n` shards: most succeed (some after a retry), `failing` of them
    exit 1 with one of three errors, `oom` of them are OOM-killed near the 512 MiB limit."""
    rng = random.Random(seed)
    store = RunStore(root)
    t0 = 1_800_000_000.0
    lanes = [0.0] * 16  # 16 shards at a time, as max_parallel would
    counts: dict[str, int] = {}
    for i in range(n):
        lane = min(range(len(lanes)), key=lanes.__getitem__)
        roll = rng.random()
        kind = "oom" if roll < oom else "fail" if roll < oom + failing else "ok"
        tries = 2 if kind == "ok" and rng.random() < retried else 1
        attempts: list[dict[str, Any]] = []
        for t in range(tries):
            wall = rng.uniform(2, 30)
            start = t0 + lanes[lane]
            lanes[lane] += wall + 0.2
            last = t == tries - 1
            failure, code, message = None, 0, "exited with 0"
            if not last:
                failure, code, message = "exit_code", 137, "exited with 137"
            elif kind == "fail":
                failure, code, message = "exit_code", 1, "exited with 1"
            elif kind == "oom":
                failure, code, message = "oom", 137, "exited with 137 (OOM-killed)"
            peak = LIMIT if kind == "oom" and last else int(rng.uniform(0.2, 0.93) * LIMIT)
            attempts.append(
                {
                    "number": t + 1,
                    "started_at": start,
                    "ended_at": start + wall,
                    "exit_code": code,
                    "oom_killed": failure == "oom",
                    "failure": failure,
                    "message": message,
                    "trace": _trace(rng, wall, peak),
                }
            )
        state = "succeeded" if kind == "ok" else "failed"
        counts[state] = counts.get(state, 0) + 1
        tail = [f"processing part-{i:05d}.txt", f"read {rng.randrange(10**6)} records"]
        if kind == "fail":
            tail += ["Traceback (most recent call last):", ERRORS[i % 3].format(i=i)]
        inv = Invocation(
            run_id=run_id,
            module="big",
            shard_index=i,
            shard_count=n,
            shard_value=f"part-{i:05d}.txt",
            image=IMAGE,
            argv=["python3", "/app/x.py", f"/in/part-{i:05d}.txt"],
            user="1000:1000",
            limits=Limits(memory_bytes=LIMIT, cpus=1),
            name=f"cx-{run_id}-{i}",
        )
        shard = ShardRecord(
            run_id=run_id,
            index=i,
            value=f"part-{i:05d}.txt",
            state=state,
            failure=attempts[-1]["failure"],
            exit_code=attempts[-1]["exit_code"],
            oom_killed=kind == "oom",
            message=attempts[-1]["message"],
            outputs_committed=kind == "ok",
            log_path=str(store.log_path(run_id, i)),
            log_tail=tail,
            invocation=inv,
        )
        data = shard.model_dump(mode="json")
        data["attempts"] = attempts
        write_json(store.shard_path(run_id, i), data, durable=False)
    store.write_run(
        RunRecord(
            run_id=run_id,
            module="big",
            version="1.0.0",
            spec_path="specs/big.yaml",
            spec={"name": "big", "resources": {"memory": "512m", "cpus": 1}},
            image=ImageRecord(ref="big:1", pinned=IMAGE, id=IMAGE, source="build"),
            inputs={"corpus": "/data/corpus"},
            outputs={"out": "/data/out"},
            shard_count=n,
            max_parallel=16,
            state="failed" if counts.get("failed") else "succeeded",
            counts=dict(sorted(counts.items())),
            started_at=t0,
            ended_at=t0 + max(lanes),
            host="builder-7",
        )
    )
    return run_id


MIXED = """name: mixed
inputs: {seed: {type: directory}}
jobs:
  a: {module: step.yaml, inputs: {src: "${{inputs.seed}}"}}
  b: {module: step.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
  c: {module: step.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
  e: {module: fan.yaml, inputs: {src: "${{jobs.a.outputs.out}}"}}
  f: {module: step.yaml, inputs: {src: "${{jobs.e.outputs.out}}"}}
"""


def failing_fan(inv: Invocation, attempt: int) -> Outcome:
    if job_of(inv) == "e" and inv.shard_index == 1:
        return Outcome(exit_code=3, errors=b"RuntimeError: shard one breaks\n")
    return Outcome()


def mixed_pipeline(kit: Kit) -> str:
    """A pipeline run whose jobs ran (a, b), came from the cache (c, alike b), failed (e:
    one shard of three) and were skipped (f, after e)."""
    result = kit.run(
        FakeEngine(failing_fan), kit.plan(MIXED), cache=True, max_workers=1, keep_going=True
    )
    return result.record.id
