"""Benchmark: N trivial shards through containerexec and the bare docker SDK, per concurrency.

Both sides run the same command in the same image with the same number of
workers, in one process, alternating which side goes first. containerexec does
more per shard than the bare loop (records, a log file, outputs staging, safe
host config); the aim is to stay within 10% of the bare SDK's wall time.

    .venv/bin/python bench/shards.py [--n 200] [--parallel 1,2,4,8] [--rounds 8] [--bare]
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
from functools import partial
from pathlib import Path
from typing import Any

import docker

from containerexec.engine.base import Engine
from containerexec.engine.docker import DockerEngine
from containerexec.engine.payload import create_kwargs
from containerexec.model.arrays import Shard
from containerexec.model.bindings import bind
from containerexec.model.invocation import resolve
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

IMAGE = "containerexec/base:bookworm"
COMMAND = ["/bin/true"]
BENCH_LABEL = "containerexec.bench"


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
        rows = [
            f"  {n:<10} {self.calls[n]:>6} calls  {1000 * t / self.calls[n]:7.1f} ms each"
            for n, t in sorted(self.total.items(), key=lambda kv: -kv[1])
        ]
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


def run_containerexec(
    engine: Engine,
    root: Path,
    spec: ModuleSpec,
    spec_path: Path,
    parallel: int,
    labels: dict[str, str],
) -> float:
    """Wall seconds of one containerexec run of every shard, records included."""
    store = RunStore(root)
    executor = Executor(engine, store)
    t0 = time.perf_counter()
    opts = RunOptions(max_parallel=parallel, labels=labels, default_outputs=root / "out")
    result = executor.start(spec, {}, {}, spec_path=spec_path, options=opts).wait()
    wall = time.perf_counter() - t0
    if result.state != "succeeded":
        raise SystemExit(
            f"containerexec run failed: {result.record.counts}; see {result.record_path}"
        )
    shutil.rmtree(store.run_dir(result.record.run_id), ignore_errors=True)
    return wall


def run_sdk(api: docker.APIClient, n: int, parallel: int, config: dict[str, Any]) -> float:
    """Wall seconds of n create/start/wait/remove cycles on a pool of `parallel` threads."""

    def one(_: int) -> None:
        kw = dict(config)
        hc = kw.pop("host_config", None)
        host_config = api.create_host_config(**hc) if hc else None
        cid = api.create_container(host_config=host_config, **kw)["Id"]
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


def sdk_configs(spec: ModuleSpec, root: Path, labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """create_container arguments of the SDK side: docker's defaults, and containerexec's own."""
    inv = resolve(
        spec,
        bind(spec, {}, {}, default_outputs=root),
        Shard(0, "0", spec_count(spec)),
        run_id="bench",
        image=IMAGE,
        staging=root,
        user=f"{os.getuid()}:{os.getgid()}",
    )
    same = create_kwargs(inv, secrets={})
    same.pop("name")  # docker names them; ours are unique per run
    hc = dict(same["host_config"])
    hc["log_config"] = docker.types.LogConfig(**hc["log_config"])
    same.update(labels=labels, host_config=hc)
    return {"bare": {"image": IMAGE, "command": COMMAND, "labels": labels}, "same": same}


def spec_count(spec: ModuleSpec) -> int:
    return (spec.array.range or 1) if spec.array else 1


@contextlib.contextmanager
def cleanup(api: docker.APIClient, labels: dict[str, str]) -> Iterator[None]:
    try:
        yield
    finally:
        key, value = next(iter(labels.items()))
        for c in api.containers(all=True, filters={"label": f"{key}={value}"}):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(c["Id"], force=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="shards per side and level (default 200)")
    ap.add_argument("--parallel", default="1,2,4,8", help="concurrency levels (default 1,2,4,8)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="split the n shards into this many interleaved runs per side (default 8)",
    )
    ap.add_argument(
        "--bare", action="store_true", help="also time the SDK with docker's default settings"
    )
    ap.add_argument("--trace", action="store_true", help="time containerexec's engine calls")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the cleanup below removes this run's containers.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    levels = [int(p) for p in args.parallel.split(",")]
    chunk = max(1, args.n // args.rounds)
    labels = {BENCH_LABEL: uuid.uuid4().hex}

    engine = DockerEngine.from_env()
    engine.ping()
    timed = TimedEngine(engine) if args.trace else None
    api = docker.APIClient(version="auto", max_pool_size=64)
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp, cleanup(api, labels):
        root = Path(tmp)
        spec_path = write_spec(root, chunk)
        spec = load_spec(spec_path)
        configs = sdk_configs(spec, root, labels)
        run_sdk(api, 4, 2, configs["same"])  # warm the engine's caches for every side
        print(
            f"{args.rounds} x {chunk} shards of {' '.join(COMMAND)} in {IMAGE} per side and "
            "level, in interleaved rounds\n(one containerexec run, one SDK pool; the order "
            "alternates). containerexec saves a record and\na log per shard. SDK same = "
            "containerexec's create settings (no network, read-only root,\ntmpfs /tmp, init, "
            "cap_drop ALL, log limits)."
            + (
                " SDK bare = docker's defaults (bridge network, writable root)."
                if args.bare
                else ""
            ),
            flush=True,
        )
        head = f"{'parallel':>8} {'containerexec s':>16} {'SDK same s':>11} {'ratio':>6}"
        head += f" {'rounds':>11}" + (f" {'SDK bare s':>11} {'ratio':>6}" if args.bare else "")
        print(head, flush=True)
        worst = 0.0
        for i, par in enumerate(levels):
            runners: dict[str, Callable[[], float]] = {
                "cx": partial(
                    run_containerexec, timed or engine, root, spec, spec_path, par, labels
                ),
                "same": partial(run_sdk, api, chunk, par, configs["same"]),
            }
            if args.bare:
                runners["bare"] = partial(run_sdk, api, chunk, par, configs["bare"])
            walls = rounds(runners, args.rounds, first=i)
            cx, same = sum(walls["cx"]), sum(walls["same"])
            per_round = [c / s for c, s in zip(walls["cx"], walls["same"], strict=True)]
            # Rounds are paired in time: their median ratio shrugs off a burst of load
            # from elsewhere on the engine that a ratio of sums would carry.
            ratio = statistics.median(per_round)
            worst = max(worst, ratio)
            row = (
                f"{par:>8} {cx:>16.2f} {same:>11.2f} {ratio:>6.3f} "
                f"{min(per_round):>5.2f}-{max(per_round):<5.2f}"
            )
            if args.bare:
                bare = sum(walls["bare"])
                row += f" {bare:>11.2f} {cx / bare:>6.3f}"  # a ratio of sums: no pairing
            print(row, flush=True)
        print(
            f"worst ratio to SDK same: {worst:.3f} (aim: <= 1.10). ratio: the median of the "
            "rounds' ratios;\nrounds: their spread, i.e. the noise"
        )
        if timed is not None:
            print("containerexec engine calls:\n" + timed.report())
    return 0


def rounds(
    runners: dict[str, Callable[[], float]], count: int, *, first: int
) -> dict[str, list[float]]:
    """Wall seconds of each side, round by round; who goes first rotates.

    Short interleaved rounds expose both sides to the same background load (other
    containers on the engine), which one long run per side would not.
    """
    names = list(runners)
    walls: dict[str, list[float]] = {name: [] for name in names}
    for r in range(count):
        k = (first + r) % len(names)
        for name in names[k:] + names[:k]:
            walls[name].append(runners[name]())
    return walls


if __name__ == "__main__":
    sys.exit(main())
