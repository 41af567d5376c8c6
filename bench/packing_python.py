"""Benchmark: a Python module's tiny values packed (one interpreter per container) against
`--batch-size 1` (a container and a python3 per value), in the same run.

An `@module` function over `array: {range: N}` that returns its index, run through the
Executor on the same engine, in alternating rounds: packed (batch_size auto, or --k) and
unpacked. Prints each side's wall seconds, how many values came back, and the ratio
packed / unpacked (issue 22 asks for at most 0.15 at N=100).

    .venv/bin/python bench/packing_python.py [--n 100] [--parallel 2] [--rounds 1] [--k auto]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from containerexec.authoring.targets import load_target
from containerexec.engine.docker import DockerEngine
from containerexec.model.spec import ModuleSpec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

SOURCE = """
from containerexec.authoring import ShardIndex, module


@module(image="containerexec/base:bookworm", array={"range": 1})
def square(index: ShardIndex) -> int:
    return index * index
"""


def spec_for(root: Path, n: int, batch: str | int) -> ModuleSpec:
    path = root / "tiny.py"
    path.write_text(SOURCE)
    spec: ModuleSpec = load_target(f"{path}:square").spec
    assert spec.array is not None
    array = spec.array.model_copy(update={"range": n, "batch_size": batch})
    return spec.model_copy(update={"array": array})


def timed(engine: DockerEngine, root: Path, spec: ModuleSpec, parallel: int) -> tuple[float, int]:
    """Wall seconds of one run, and how many values came back right."""
    store = RunStore(root / f"runs-{time.monotonic_ns()}")
    t0 = time.perf_counter()
    run = Executor(engine, store).start(spec, {}, {}, options=RunOptions(max_parallel=parallel))
    result = run.wait()
    seconds = time.perf_counter() - t0
    back = sum(v == i * i for i, v in enumerate(result.values))
    shutil.rmtree(store.root, ignore_errors=True)
    return seconds, back


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--k", default="auto", help="values per container when packed")
    a = p.parse_args()
    engine = DockerEngine.from_env()
    root = Path(tempfile.mkdtemp(prefix="pypackbench-"))
    k: str | int = a.k if a.k == "auto" else int(a.k)
    try:
        packed_spec, unpacked_spec = spec_for(root, a.n, k), spec_for(root, a.n, 1)
        ratios = []
        for r in range(a.rounds):
            sides = [("packed", packed_spec), ("unpacked", unpacked_spec)]
            times = {}
            for name, spec in sides if r % 2 == 0 else sides[::-1]:
                times[name], back = timed(engine, root, spec, a.parallel)
                print(f"round {r + 1}: {name}: {times[name]:.1f} s, {back}/{a.n} values back")
            ratios.append(times["packed"] / times["unpacked"])
        print(
            f"{a.n} Python values, {a.parallel} containers at once, batch_size {a.k}: "
            f"packed / unpacked wall time = {statistics.median(ratios):.3f} "
            f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}; issue 22 asks <= 0.15)"
        )
    finally:
        engine.api.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
