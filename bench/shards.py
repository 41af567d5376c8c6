"""Benchmark: N trivial shards through containerexec and through the bare docker SDK, per concurrency.

Both sides run the same command in the same image with the same number of
workers, in one process, alternating which side goes first. containerexec does
more per shard than the bare loop (records, a log file, outputs staging, safe
host config); the aim is to stay within 10% of the bare SDK's wall time.

    .venv/bin/python bench/shards.py [--n 200] [--parallel 1,2,4,8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from containerexec.bindings import bind
from containerexec.engine import DockerEngine, Engine, create_kwargs
from containerexec.executor import Executor, RunOptions
from containerexec.invocation import resolve
from containerexec.arrays import Shard
from containerexec.records import RunStore
from containerexec.spec import ModuleSpec, load_spec

IMAGE = "containerexec/base:bookworm"
COMMAND = ["/bin/true"]
BENCH_LABEL = "containerexec.bench"


@dataclass
class Side:
    """Wall times of one side at one concurrency, over the repeats."""

    walls: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


class TimedEngine:
    """Wraps an Engine and adds up the time spent in each method (for --trace)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)  # for attach: opening the stream, not reading it
            finally:
                self._add(name, time.perf_counter() - t0)

        return timed

    def _add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.total[name] = self.total.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def report(self) -> str:
        rows = [f"  {n:<10} {self.calls[n]:>6} calls  {1000 * t / self.calls[n]:7.1f} ms each"
                for n, t in sorted(self.total.items(), key=lambda kv: -kv[1])]
        return "\n".join(rows)


def write_spec(folder: Path, n: int) -> Path:
    path = folder / "bench.yaml"
    command = ", ".join(f'"{a}"' for a in COMMAND)
    path.write_text(
        "name: bench\n"
        f"environment: {{image: {IMAGE}, pull: never}}\n"
        f"command: [{command}]\n"
        f"array: {{range: {n}}}\n"
    )
    return path


def run_containerexec(engine: Engine, root: Path, spec: ModuleSpec, spec_path: Path,
                      parallel: int, labels: dict[str, str]) -> float:
    """Wall seconds of one containerexec run of every shard, records included."""
    store = RunStore(root)
    executor = Executor(engine, store)
    bindings = bind(spec, {}, {}, default_outputs=root / "out")
    t0 = time.perf_counter()
    result = executor.run(spec, bindings, spec_path=spec_path,
                          options=RunOptions(max_parallel=parallel, labels=labels))
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"containerexec run failed: {result.record.counts}; "
                         f"see {result.record_path}")
    shutil.rmtree(store.run_dir(result.record.run_id), ignore_errors=True)
    return wall


def run_sdk(api: docker.APIClient, n: int, parallel: int, labels: dict[str, str],
            host_config: dict[str, Any] | None) -> float:
    """Wall seconds of n create/start/wait/remove cycles on a pool of `parallel` threads."""

    def one(_: int) -> None:
        hc = api.create_host_config(**host_config) if host_config else None
        cid = api.create_container(IMAGE, COMMAND, labels=labels, host_config=hc)["Id"]
        try:
            api.start(cid)
            code = api.wait(cid)["StatusCode"]
            if code != 0:
                raise RuntimeError(f"container {cid[:12]} exited with {code}")
        finally:
            api.remove_container(cid, force=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def same_host_config(spec: ModuleSpec, root: Path) -> dict[str, Any]:
    """containerexec's host config for this spec, for an SDK side with identical settings."""
    inv = resolve(spec, bind(spec, {}, {}, default_outputs=root), Shard(0, "0", 1),
                  run_id="bench", image=IMAGE, staging=root, user="0:0")
    hc = dict(create_kwargs(inv, secrets={})["host_config"])
    hc["log_config"] = docker.types.LogConfig(**hc.pop("log_config"))
    hc.pop("mounts")
    return hc


@contextlib.contextmanager
def cleanup(api: docker.APIClient, labels: dict[str, str]) -> Iterator[None]:
    try:
        yield
    finally:
        key, value = next(iter(labels.items()))
        for c in api.containers(all=True, filters={"label": f"{key}={value}"}):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(c["Id"], force=True)


def measure(order: list[str], runners: dict[str, Callable[[], float]],
            sides: dict[str, Side]) -> None:
    for name in order:
        sides[name].walls.append(runners[name]())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="shards per run (default 200)")
    ap.add_argument("--parallel", default="1,2,4,8", help="concurrency levels (default 1,2,4,8)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side and level; median")
    ap.add_argument("--sdk-host-config", choices=("bare", "same"), default="bare",
                    help="SDK side: docker's defaults, or containerexec's safe host config")
    ap.add_argument("--trace", action="store_true", help="time containerexec's engine calls")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the cleanup below removes this run's containers.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    levels = [int(p) for p in args.parallel.split(",")]
    labels = {BENCH_LABEL: uuid.uuid4().hex}

    engine = DockerEngine.from_env()
    engine.ping()
    timed = TimedEngine(engine) if args.trace else None
    api = docker.APIClient(version="auto", max_pool_size=64)
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp, cleanup(api, labels):
        root = Path(tmp)
        spec_path = write_spec(root, args.n)
        spec = load_spec(spec_path)
        hc = same_host_config(spec, root) if args.sdk_host_config == "same" else None
        run_sdk(api, 4, 2, labels, hc)  # warm the engine's caches for both sides
        print(f"{args.n} shards of {' '.join(COMMAND)} in {IMAGE}; SDK host config: "
              f"{args.sdk_host_config} ("
              + ("matches containerexec's" if hc else "docker defaults; containerexec adds "
                 "read-only root, tmpfs /tmp, init, cap_drop ALL, no network, log limits")
              + f"); median of {args.repeat}", flush=True)
        print(f"{'parallel':>8} {'containerexec s':>16} {'SDK s':>8} {'ratio':>6}", flush=True)
        worst = 0.0
        for i, par in enumerate(levels):
            sides = {"cx": Side(), "sdk": Side()}
            runners = {
                "cx": lambda par=par: run_containerexec(timed or engine, root, spec, spec_path,
                                                        par, labels),
                "sdk": lambda par=par: run_sdk(api, args.n, par, labels, hc),
            }
            for r in range(args.repeat):
                # Alternate who goes first, so a drifting engine favours neither side.
                measure(["sdk", "cx"] if (i + r) % 2 == 0 else ["cx", "sdk"], runners, sides)
            ratio = sides["cx"].median / sides["sdk"].median
            worst = max(worst, ratio)
            print(f"{par:>8} {sides['cx'].median:>16.2f} {sides['sdk'].median:>8.2f} "
                  f"{ratio:>6.3f}", flush=True)
        print(f"worst ratio {worst:.3f} (aim: <= 1.10)")
        if timed is not None:
            print("containerexec engine calls:\n" + timed.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
