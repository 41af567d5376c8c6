"""Benchmark: many tiny shards, packed K to a container (array.batch_size) and unpacked.

In one process, on the same engine: N shards of `true` packed (batch_size auto) and
a smaller unpacked sample whose per-shard cost is extrapolated to N; M shards of
50 ms of work, packed and unpacked; and the executor's peak memory (max RSS) after
a packed run of N/10 shards and after one of N shards. Prints the ratios.

    .venv/bin/python bench/packing.py [--n 10000] [--sample 300] [--work 1000] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
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
    store = RunStore(root / f"runs-{time.monotonic_ns()}")
    executor = Executor(engine, store)
    t0 = time.perf_counter()
    run = executor.start(m, {}, {}, options=RunOptions(max_parallel=parallel))
    result = run.wait()
    seconds = time.perf_counter() - t0
    counts = result.record.counts
    if counts.get("succeeded", 0) != result.record.shard_count:
        raise SystemExit(f"benchmark run did not succeed: {counts}")
    shutil.rmtree(store.root, ignore_errors=True)
    return seconds, run.batch_size


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--sample", type=int, default=300)
    p.add_argument("--work", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 2)
    # 50 ms of sleep uses no CPU: both sides get the same, larger number of containers.
    p.add_argument("--work-parallel", type=int, default=16)
    p.add_argument("--only-work", action="store_true", help="only the 50 ms comparison")
    a = p.parse_args()
    engine = DockerEngine.from_env()
    root = Path(tempfile.mkdtemp(prefix="packbench-"))
    par = a.parallel
    try:
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
    small, _ = timed(engine, root, spec(a.n // 10, ["true"], "auto"), par)
    rss_small = rss_mib()
    packed, k = timed(engine, root, spec(a.n, ["true"], "auto"), par)
    rss_big = rss_mib()
    unpacked, _ = timed(engine, root, spec(a.sample, ["true"], None), par)
    per_shard = unpacked / a.sample
    print(f"{a.n} x true, packed (auto: K={k}), {par} containers: {packed:.1f} s")
    print(
        f"{a.sample} x true, unpacked: {unpacked:.1f} s = {1000 * per_shard:.1f} ms per "
        f"shard -> {a.n} unpacked ~ {per_shard * a.n:.0f} s; packed is "
        f"{per_shard * a.n / packed:.1f}x faster"
    )
    print(
        f"executor max RSS: {rss_small:.0f} MiB after {a.n // 10} packed shards, "
        f"{rss_big:.0f} MiB after {a.n} ({rss_big / rss_small:.2f}x for 10x the shards)"
    )


if __name__ == "__main__":
    main()
