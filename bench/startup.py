"""Benchmark: how long `containerexec` takes to start, against Python itself.

Each command runs N times in a fresh process; the table shows the median wall
time, the median CPU time (user + system: what the start-up costs, and what a
busy machine moves least) and both as a multiple of `python -c pass`.

    .venv/bin/python bench/startup.py [--n 15] [--bin .venv/bin/containerexec]

Targets (issue 21): --version and --help <= 0.2 s, validate of the wordcount
spec <= 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["--version"],
    ["--help"],
    ["validate", "specs/wordcount.yaml"],
    ["runs", "list"],
]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of `argv`, in a fresh process."""
    before = os.times()
    began = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - began
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def medians(argv: list[str], n: int) -> tuple[float, float]:
    timed(argv)  # warm the file cache once
    runs = [timed(argv) for _ in range(n)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=15, help="Runs of each command.")
    parser.add_argument(
        "--bin",
        type=Path,
        default=Path(sys.executable).with_name("containerexec"),
        help="The containerexec console script to time (default: this venv's).",
    )
    a = parser.parse_args()
    python = str(Path(a.bin).with_name("python"))
    base_wall, base_cpu = medians([python, "-c", "pass"], a.n)
    print(f"{a.bin}  (median of {a.n} runs; x = multiple of `python -c pass`)")
    print(f"{'command':<44} {'wall s':>7} {'x':>6} {'cpu s':>7} {'x':>6}")
    print(f"{'python -c pass':<44} {base_wall:>7.3f} {1:>6.1f} {base_cpu:>7.3f} {1:>6.1f}")
    for args in COMMANDS:
        wall, cpu = medians([str(a.bin), *args], a.n)
        label = "containerexec " + " ".join(args)
        print(
            f"{label:<44} {wall:>7.3f} {wall / base_wall:>6.1f} "
            f"{cpu:>7.3f} {cpu / max(base_cpu, 1e-3):>6.1f}"
        )


if __name__ == "__main__":
    main()
