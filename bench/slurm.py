"""Benchmark: the per-shard overhead of a run on Slurm against a local run of the same array.

Starts the tests' one-node Slurm cluster (tests/slurm.py: root, a temp folder, free
ports), then runs the same N-shard array of `true` locally and with --on slurm,
alternating which goes first, and reports seconds per shard and their ratio. The
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
from containerexec.run.scheduler import LocalPool, Scheduler  # noqa: E402
from containerexec.run.slurm import SlurmScheduler, SlurmSettings  # noqa: E402
from containerexec.store.records import RunRecord, SchedulerRecord  # noqa: E402
from containerexec.store.tree import RunStore  # noqa: E402

BASE_IMAGE = "containerexec/base:bookworm"


class OneNodeSlurm(SlurmScheduler):
    """Slurm on this machine: its engine has the image, so no registry is needed."""

    def admit(self, record: RunRecord) -> RunRecord:
        return record.model_copy(update={"scheduler": SchedulerRecord(kind="slurm")})


def one_run(engine: DockerEngine, root: Path, n: int, parallel: int, where: Scheduler) -> float:
    spec = ModuleSpec.model_validate(
        {
            "name": "bench",
            "environment": {"image": BASE_IMAGE, "pull": "never"},
            "command": ["true"],
            "array": {"range": n, "max_parallel": parallel},
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
    times: dict[str, list[float]] = {"local": [], "slurm": []}
    with SlurmCluster() as cluster, tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        os.environ["SLURM_CONF"] = str(cluster.conf)
        engine = DockerEngine.from_env()
        slurm = OneNodeSlurm(settings=SlurmSettings(poll_s=0.5))
        for r in range(args.rounds):
            order = ["local", "slurm"] if r % 2 == 0 else ["slurm", "local"]
            for name in order:
                where: Scheduler = slurm if name == "slurm" else LocalPool()
                took = one_run(engine, Path(tmp) / f"{name}{r}", args.n, args.parallel, where)
                times[name].append(took)
                print(f"round {r} {name:5}: {took:6.1f} s ({took / args.n:.2f} s/shard)")
        engine.api.close()
    local, slurm_t = statistics.median(times["local"]), statistics.median(times["slurm"])
    print(
        f"\n{args.n} shards, {args.parallel} at once, median of {args.rounds}: "
        f"local {local / args.n:.2f} s/shard, slurm {slurm_t / args.n:.2f} s/shard, "
        f"ratio {slurm_t / local:.1f}x; slurm overhead {(slurm_t - local) / args.n:.2f} s/shard"
    )


if __name__ == "__main__":
    main()
