"""Benchmark: the per-shard overhead of a run on Slurm against a local run of the same array.

Starts the tests' one-node Slurm cluster (tests/slurm.py: root, a temp folder, free
ports), then runs the same N-shard array of `true` locally, with --on slurm, and
with --on slurm packed (batch_size auto: one task per batch), rotating which goes
first, and reports seconds per shard and the ratios. The
image is the local base image: the node is this machine, so the bench skips the
"pushed to a registry" check (admit) that a real cluster needs.

    .venv/bin/python bench/slurm.py [--n 24] [--parallel 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from slurm import SlurmCluster  # noqa: E402

from containerexec.engine.docker import DockerEngine  # noqa: E402
from containerexec.model.spec import ModuleSpec  # noqa: E402
from containerexec.run.executor import Executor, RunOptions  # noqa: E402
from containerexec.run.placement.base import Placement  # noqa: E402
from containerexec.run.placement.cluster import ArrayPlacement  # noqa: E402
from containerexec.run.placement.local import LocalPool  # noqa: E402
from containerexec.run.placement.slurm import SlurmBackend  # noqa: E402
from containerexec.run.placement.slurm.script import SlurmSettings  # noqa: E402
from containerexec.store.records import RunRecord, SchedulerRecord  # noqa: E402
from containerexec.store.tree import RunStore  # noqa: E402

BASE_IMAGE = "containerexec/base:bookworm"


class OneNodeSlurm(ArrayPlacement):
    """Slurm on this machine: its engine has the image, so no registry is needed."""

    def admit(self, record: RunRecord) -> RunRecord:
        return record.model_copy(update={"scheduler": SchedulerRecord(kind="slurm")})


def one_run(
    engine: DockerEngine, root: Path, n: int, parallel: int, where: Placement, packed: bool
) -> float:
    array = {"range": n, "max_parallel": parallel, **({"batch_size": "auto"} if packed else {})}
    spec = ModuleSpec.model_validate(
        {
            "name": "bench",
            "environment": {"image": BASE_IMAGE, "pull": "never"},
            "command": ["true"],
            "array": array,
        }
    )
    executor = Executor(engine, RunStore(root / "runs"), scheduler=where)
    started = time.perf_counter()
    result = executor.start(spec, {}, {}, options=RunOptions()).wait()
    took = time.perf_counter() - started
    assert result.record.state == "succeeded", result.record.counts
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    legs = ["local", "slurm", "packed"]
    times: dict[str, list[float]] = {name: [] for name in legs}
    with SlurmCluster() as cluster, tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        os.environ["SLURM_CONF"] = str(cluster.conf)
        engine = DockerEngine.from_env()
        slurm = OneNodeSlurm(SlurmBackend(SlurmSettings(poll_s=0.5)))
        for r in range(args.rounds):
            for name in legs[r % 3 :] + legs[: r % 3]:
                where: Placement = LocalPool() if name == "local" else slurm
                root = Path(tmp) / f"{name}{r}"
                took = one_run(engine, root, args.n, args.parallel, where, name == "packed")
                times[name].append(took)
                print(f"round {r} {name:6}: {took:6.1f} s ({took / args.n:.2f} s/shard)")
        engine.api.close()
    local, slurm_t, packed = (statistics.median(times[name]) for name in legs)
    print(
        f"\n{args.n} shards, {args.parallel} at once, median of {args.rounds}: "
        f"local {local / args.n:.2f} s/shard, slurm {slurm_t / args.n:.2f} s/shard "
        f"({slurm_t / local:.1f}x local; overhead {(slurm_t - local) / args.n:.2f} s/shard), "
        f"slurm packed (auto) {packed / args.n:.2f} s/shard ({slurm_t / packed:.1f}x faster "
        f"than unpacked on Slurm, {packed / local:.2f}x local)"
    )


if __name__ == "__main__":
    main()
