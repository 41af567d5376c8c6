"""Benchmark: what the resource trace costs a 1,000-shard array (issue 24: at most 2 %).

The same array of `/bin/true` shards runs through containerexec with the trace on and
off (`CONTAINEREXEC_TRACE=0`, the switch that exists for this benchmark), in
interleaved rounds whose order alternates, so both sides see the same background
load. It prints each side's wall time, the median of the rounds' on/off ratios and
their spread (the noise), and the cost of one read of a container's cgroup.

    .venv/bin/python bench/trace.py [--n 1000] [--rounds 10] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
from shards import BENCH_LABEL, IMAGE, TimedEngine, cleanup, rounds, run_containerexec, write_spec

from containerexec.engine.docker import DockerEngine
from containerexec.model.spec import load_spec


def read_cost_us(engine: DockerEngine, api: docker.APIClient, labels: dict[str, str]) -> float:
    """Microseconds per Engine.stats of a running container (the sampler's one cost)."""
    cid = api.create_container(IMAGE, ["sleep", "30"], labels=labels)["Id"]
    try:
        api.start(cid)
        engine.stats(cid)  # finds the cgroup once
        t0 = time.perf_counter()
        for _ in range(1000):
            engine.stats(cid)
        return (time.perf_counter() - t0) * 1000
    finally:
        api.remove_container(cid, force=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="shards per side (default 1000)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved runs per side")
    ap.add_argument("--parallel", type=int, default=2, help="max_parallel (default 2)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    chunk = max(1, args.n // args.rounds)
    labels = {BENCH_LABEL: uuid.uuid4().hex}
    engine = DockerEngine.from_env()
    engine.ping()
    api = docker.APIClient(version="auto")
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp, cleanup(api, labels):
        root = Path(tmp)
        spec_path = write_spec(root, chunk)
        spec = load_spec(spec_path)

        timed = TimedEngine(engine)  # both sides: the same wrapper's cost

        def side(on: bool) -> float:
            os.environ["CONTAINEREXEC_TRACE"] = "1" if on else "0"
            return run_containerexec(timed, root, spec, spec_path, args.parallel, labels)

        side(True)  # warm the engine's caches
        timed.total.clear()
        timed.calls.clear()
        walls = rounds({"on": lambda: side(True), "off": lambda: side(False)}, args.rounds, first=0)
        os.environ.pop("CONTAINEREXEC_TRACE", None)
        n = chunk * args.rounds
        per_round = [a / b for a, b in zip(walls["on"], walls["off"], strict=True)]
        ratio = statistics.median(per_round)
        print(
            f"{args.rounds} x {chunk} shards of /bin/true in {IMAGE}, max_parallel "
            f"{args.parallel}, trace on and off in interleaved rounds\n"
            f"trace on:  {sum(walls['on']):8.2f} s\ntrace off: {sum(walls['off']):8.2f} s\n"
            f"ratio on/off: {ratio:.3f} (median of the rounds; spread "
            f"{min(per_round):.3f}-{max(per_round):.3f}; aim: <= 1.02)\n"
            f"one cgroup read: {read_cost_us(engine, api, labels):.0f} us\n"
            f"trace reads per shard: {timed.calls.get('stats', 0) / n:.1f}, "
            f"{1000 * timed.total.get('stats', 0.0) / n:.2f} ms per shard "
            f"({timed.total.get('stats', 0.0) / sum(walls['on']) / args.parallel:.2%} of "
            "the trace-on side's worker time)"
        )
    engine.close()
    api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
