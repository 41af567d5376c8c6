"""Scale: the cost of planning (and running, on an instant engine) a large array, time and memory.

Each measurement runs in a fresh child process, so its peak RSS is its own:

    .venv/bin/python bench/scale.py                 # plan and run, 1,000 vs 10,000 shards
    .venv/bin/python bench/scale.py --child plan --n 10000   # one measurement, as JSON

`plan` expands the array, selects, resolves every shard's Invocation and writes
its first shard record (as the executor does when a shard starts, without fsync). `run` pushes
every shard through the real Executor on an engine whose containers exit 0 at
once, so what is left is containerexec's own cost per shard.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from containerexec.engine.base import (
    ContainerInfo,
    Engine,
    EngineIdentity,
    ExitStatus,
    ImageInfo,
    Stats,
)
from containerexec.model import arrays
from containerexec.model.bindings import bind
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.records import ShardRecord
from containerexec.store.tree import RunStore

IMAGE = "containerexec/base:bookworm"
SPEC = """name: scale
environment: {{image: {image}, pull: never}}
inputs:
  corpus: {{type: directory}}
outputs:
  out: {{type: directory}}
command: [python3, /app/x.py, "${{{{inputs.corpus}}}}", "${{{{shard.value}}}}",
          "${{{{outputs.out}}}}/${{{{shard.index}}}}.tsv"]
array: {{range: {n}, max_parallel: 4}}
"""


class Silence:
    """The output of a container that prints nothing."""

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        return iter(())

    def close(self) -> None:
        pass


class InstantEngine:
    """An Engine whose containers exit 0 at once and print nothing; it keeps no history."""

    def __init__(self) -> None:
        self._ids = itertools.count()

    def ping(self) -> None:
        pass

    def create(self, inv: Invocation, *, secrets: Mapping[str, str]) -> str:
        return f"c{next(self._ids)}"

    def start(self, container_id: str) -> None:
        pass

    def wait(self, container_id: str, *, timeout_s: float | None) -> ExitStatus:
        return ExitStatus(exit_code=0, oom_killed=False)

    def attach(self, container_id: str) -> Silence:
        return Silence()

    def stats(self, container_id: str) -> Stats | None:
        return None  # exited at once: no cgroup left to read

    def stop(self, container_id: str, *, grace_s: float) -> None:
        pass

    def remove(self, container_id: str) -> None:
        pass

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return []

    def places(self) -> EnginePlaces:
        return EnginePlaces()  # no engine data folder or socket to keep out of mounts

    def identity(self) -> EngineIdentity:
        return EngineIdentity("instant", "bench")

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(id="sha256:" + "0" * 64, tags=[ref])


def rss_kb() -> int:
    """Resident set size now, in KiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB. Not getrusage's ru_maxrss: Linux carries that
    over from the parent across fork and exec, so a big parent (pytest) would show."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def setup(root: Path, n: int) -> tuple[ModuleSpec, Path, Path]:
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    spec_path = root / "scale.yaml"
    spec_path.write_text(SPEC.format(image=IMAGE, n=n))
    return load_spec(spec_path), spec_path, corpus


def measure_plan(root: Path, n: int) -> dict[str, Any]:
    """Expand, select and resolve n shards; write each one's first record."""
    spec, _, corpus = setup(root, n)
    bindings = bind(spec, {"corpus": str(corpus)}, {}, default_outputs=root / "out")
    store = RunStore(root / "store")
    base = rss_kb()
    t0 = time.perf_counter()
    shards = arrays.expand(spec.array, bindings.inputs)
    selected = arrays.select(shards, f"0-{n - 1}")
    t_expand = time.perf_counter() - t0
    t0 = time.perf_counter()
    invocations = [
        resolve(
            spec,
            bindings,
            s,
            run_id="scale",
            image=IMAGE,
            staging=store.staging("scale", s.index),
            user="1000:1000",
        )
        for s in selected
    ]
    t_resolve = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s, inv in zip(selected, invocations, strict=True):
        store.write_shard(
            ShardRecord(
                run_id="scale",
                index=s.index,
                value=s.value,
                state="running",
                invocation=inv,
                log_path=str(store.log_path("scale", s.index)),
            ),
            durable=False,
        )  # as the executor writes a shard's 'running' record
    t_write = time.perf_counter() - t0
    return {
        "mode": "plan",
        "n": n,
        "expand_s": t_expand,
        "resolve_s": t_resolve,
        "write_s": t_write,
        "rss_base_kb": base,
        "rss_peak_kb": peak_rss_kb(),
    }


def measure_run(root: Path, n: int) -> dict[str, Any]:
    """Every shard through the Executor on InstantEngine: containerexec's own cost."""
    spec, spec_path, corpus = setup(root, n)
    # Only the methods a run of a local image uses: the rest of Engine is not needed here.
    executor = Executor(cast(Engine, InstantEngine()), RunStore(root / "store"))
    base = rss_kb()
    t0 = time.perf_counter()
    opts = RunOptions(default_outputs=root / "out")
    run = executor.start(spec, {"corpus": str(corpus)}, {}, spec_path=spec_path, options=opts)
    result = run.wait()
    wall = time.perf_counter() - t0
    if result.state != "succeeded":
        raise SystemExit(f"run failed: {result.record.counts}")
    return {
        "mode": "run",
        "n": n,
        "run_s": wall,
        "rss_base_kb": base,
        "rss_peak_kb": peak_rss_kb(),
        "per_shard_ms": 1000 * wall / n,
    }


def child(mode: str, n: int) -> dict[str, Any]:
    """One measurement in a fresh process, so its peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def growth_kb(m: Mapping[str, Any]) -> int:
    return int(m["rss_peak_kb"]) - int(m["rss_base_kb"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("plan", "run"), help="measure once and print JSON")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=1_000, help="the smaller size to compare with")
    ap.add_argument("--modes", default="plan,run")
    args = ap.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="cx-scale-") as tmp:
            measure = measure_plan if args.child == "plan" else measure_run
            print(json.dumps(measure(Path(tmp), args.n)))
        return 0
    for mode in args.modes.split(","):
        small, large = child(mode, args.small), child(mode, args.n)
        for m in (small, large):
            times = ", ".join(f"{k} {v:.2f}" for k, v in m.items() if k.endswith("_s"))
            grown = growth_kb(m)
            print(
                f"{mode:>4} {m['n']:>6} shards: {times}; RSS +{grown / 1024:.1f} MiB "
                f"({1024 * grown / m['n']:.0f} B/shard), peak {m['rss_peak_kb'] / 1024:.0f} MiB"
            )
        ratio = growth_kb(large) / max(growth_kb(small), 1)
        print(
            f"{mode:>4} RSS growth {args.n} vs {args.small} shards: x{ratio:.1f} "
            f"(linear: x{args.n / args.small:.0f}, quadratic: x{(args.n / args.small) ** 2:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
