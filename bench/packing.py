"""Benchmark: many tiny shards, packed K to a container (array.batch_size) and unpacked.

In one process, on the same engine: N shards of `true` packed (batch_size auto) and
a smaller unpacked sample whose per-shard cost is extrapolated to N; M shards of
50 ms of work, packed and unpacked; and the executor's peak memory (max RSS) of a
packed run of N/10, N and 2N shards, each in a fresh process. Prints the ratios.

    .venv/bin/python bench/packing.py [--n 10000] [--sample 300] [--work 1000] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from containerexec.engine.docker import DockerEngine
from containerexec.model.spec import ModuleSpec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

IMAGE = "containerexec/base:bookworm"


def spec(n: int, command: list[str], batch: str | int | None) -> ModuleSpec:
    array: dict[str, object] = {"range": n}
    if batch is not None:
        array["batch_size"] = batch
    return ModuleSpec.model_validate(
        {
            "name": "packbench",
            "version": "1.0.0",
            "environment": {"image": IMAGE},
            "command": command,
            "array": array,
        }
    )


def timed(engine: DockerEngine, root: Path, m: ModuleSpec, parallel: int) -> tuple[float, int]:
    """Wall seconds of one run, and the batch size it chose."""
    seconds, k, _, _ = timed_cpu(engine, root, m, parallel)
    return seconds, k


def timed_cpu(
    engine: DockerEngine, root: Path, m: ModuleSpec, parallel: int
) -> tuple[float, int, float, float]:
    """timed(), the CPU seconds this process used for it, and those its containers used
    (from the records' cgroup figures: a packed value's are its batch container's so far,
    so each container's last counts)."""
    cpu0 = cpu_s()
    store = RunStore(root / f"runs-{time.monotonic_ns()}")
    executor = Executor(engine, store)
    t0 = time.perf_counter()
    run = executor.start(m, {}, {}, options=RunOptions(max_parallel=parallel))
    result = run.wait()
    seconds = time.perf_counter() - t0
    used = cpu_s() - cpu0
    counts = result.record.counts
    if counts.get("succeeded", 0) != result.record.shard_count:
        raise SystemExit(f"benchmark run did not succeed: {counts}")
    cpu: dict[str, float] = {}
    for r in store.iter_shards(result.record.run_id):
        for a in r.attempts:
            if a.container_id and a.trace is not None and a.trace.cpu_seconds is not None:
                cpu[a.container_id] = max(cpu.get(a.container_id, 0.0), a.trace.cpu_seconds)
    shutil.rmtree(store.root, ignore_errors=True)
    return seconds, run.task_size, used, sum(cpu.values())


def cpu_s() -> float:
    """This process's user + system CPU seconds so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_of_run(n: int, parallel: int) -> tuple[float, int]:
    """Max RSS (MiB) of a fresh process that runs n packed shards of `true`, and its K."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-of", str(n), "--parallel", str(parallel)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--sample", type=int, default=300)
    p.add_argument("--work", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 2)
    # 50 ms of sleep uses no CPU: both sides get the same, larger number of containers.
    p.add_argument("--work-parallel", type=int, default=16)
    p.add_argument("--only-work", action="store_true", help="only the 50 ms comparison")
    p.add_argument("--rss-of", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    engine = DockerEngine.from_env()
    root = Path(tempfile.mkdtemp(prefix="packbench-"))
    par = a.parallel
    try:
        if a.rss_of is not None:  # the child process of rss_of_run
            _, k = timed(engine, root, spec(a.rss_of, ["true"], "auto"), par)
            print(f"{rss_mib():.1f} {k}")
            return
        if not a.only_work:
            true_shards(engine, root, a, par)
        work = ["sh", "-c", "sleep 0.05"]
        wpar = a.work_parallel
        wp, wk = timed(engine, root, spec(a.work, work, "auto"), wpar)
        wu, _ = timed(engine, root, spec(a.work, work, None), wpar)
        print(
            f"{a.work} x 50 ms, {wpar} containers at once: packed (K={wk}) {wp:.1f} s, "
            f"unpacked {wu:.1f} s: {wu / wp:.1f}x faster"
        )
    finally:
        engine.api.close()
        shutil.rmtree(root, ignore_errors=True)


def true_shards(engine: DockerEngine, root: Path, a: argparse.Namespace, par: int) -> None:
    """N x `true` packed against an unpacked sample, and the executor's memory."""
    packed, k, cpu, inside = timed_cpu(engine, root, spec(a.n, ["true"], "auto"), par)
    unpacked, _ = timed(engine, root, spec(a.sample, ["true"], None), par)
    per_shard = unpacked / a.sample
    print(
        f"{a.n} x true, packed (auto: K={k}), {par} containers: {packed:.1f} s "
        f"= {1000 * packed / a.n:.2f} ms per value; containerexec's own CPU "
        f"{1000 * cpu / a.n:.2f} ms per value, its containers' "
        f"{1000 * inside / a.n:.2f} ms per value (wall time on a busy machine is mostly "
        f"the queue for a core: compare these; load now {os.getloadavg()[0]:.1f})"
    )
    print(
        f"{a.sample} x true, unpacked: {unpacked:.1f} s = {1000 * per_shard:.1f} ms per "
        f"shard -> {a.n} unpacked ~ {per_shard * a.n:.0f} s; packed is "
        f"{per_shard * a.n / packed:.1f}x faster"
    )
    sizes = [a.n // 10, a.n, 2 * a.n]
    rss = [rss_of_run(n, par) for n in sizes]
    print(
        "executor max RSS, a fresh process per run: "
        + ", ".join(
            f"{n} shards (K={kn}) {mib:.0f} MiB" for n, (mib, kn) in zip(sizes, rss, strict=True)
        )
    )
    grew = (rss[2][0] - rss[1][0]) * 1024 * 1024 / (sizes[2] - sizes[1])
    print(
        f"from {sizes[1]} to {sizes[2]} shards (same K): {rss[2][0] / rss[1][0]:.2f}x, "
        f"{grew:.0f} bytes per added shard"
    )


if __name__ == "__main__":
    main()
