"""Memory growth measured over large inputs: tens of thousands of shards, a 200 MB log.

Marked `slow` (minutes, not seconds): `make test` runs them, `make test-unit` does not;
`pytest -m "not slow"` leaves them out. No timing is asserted, only the shape of memory
growth, because the machine's speed varies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from workspace import Workspace, workspace_fixture  # noqa: F401

pytestmark = pytest.mark.slow

SCALE = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def measure(mode: str, n: int) -> dict[str, Any]:
    """One bench/scale.py measurement in a fresh child, so its peak RSS belongs to one size."""
    out = subprocess.run(
        [sys.executable, str(SCALE), "--child", mode, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout))


def growth_kb(m: dict[str, Any]) -> int:
    # A floor of 2 MiB: below it, allocator and thread-stack noise would swamp the ratio.
    return max(int(m["rss_peak_kb"]) - int(m["rss_base_kb"]), 2048)


@pytest.mark.parametrize(("mode", "small", "large"), [("plan", 1_000, 10_000), ("run", 500, 5_000)])
def test_memory_grows_linearly_with_the_number_of_shards(mode: str, small: int, large: int) -> None:
    """plan: every Invocation held and its record written; run: the Executor end to end
    on an engine whose containers exit at once (smaller, to keep the test short).

    Ten times the shards may cost at most about ten times the memory (quadratic
    growth would be a hundred times), and a few KiB per shard at most.
    """
    few, many = measure(mode, small), measure(mode, large)
    detail = f"{mode}: {small} shards +{growth_kb(few)} KiB, {large} shards +{growth_kb(many)} KiB"
    assert growth_kb(many) / growth_kb(few) < 2 * large / small, detail
    assert growth_kb(many) / large < 16, detail


LOUD_SPEC = """\
name: loud
inputs: {chunks: {type: integer}}
command:
  - python3
  - -c
  - |
    import sys
    block = ("x" * 99 + "\\n") * 10000
    for _ in range(int(sys.argv[1])):
        sys.stdout.write(block)
    print("THE LAST LINE")
  - "${{inputs.chunks}}"
"""


def peak_rss_kib(ws: Workspace, *args: str) -> tuple[int, int]:
    """Run containerexec; sample its peak RSS (VmHWM) from /proc until it exits."""
    proc = ws.start(*args)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass  # it just exited
        time.sleep(0.05)
    return proc.returncode, peak


@pytest.mark.docker
def test_a_200_mb_log_keeps_the_last_lines_under_the_limit_and_memory_flat(
    workspace: Workspace,
) -> None:
    spec = str(workspace.spec(LOUD_SPEC))
    code_small, small = peak_rss_kib(workspace, "run", spec, "-i", "chunks=1", "--log-limit", "1m")
    code_big, big = peak_rss_kib(workspace, "run", spec, "-i", "chunks=200", "--log-limit", "1m")
    assert (code_small, code_big) == (0, 0)
    big_run = max(workspace.store.ids(), key=lambda i: workspace.store.load_run(i).started_at)
    log = Path(workspace.store.load_shards(big_run)[0].log_path)
    assert log.stat().st_size <= 1024 * 1024
    text = log.read_text()
    assert text.startswith("[containerexec: ")
    assert text.endswith("x\nTHE LAST LINE\n")
    # 200 MB went through the executor; its peak memory must not follow.
    assert big < small * 1.5, (small, big)
