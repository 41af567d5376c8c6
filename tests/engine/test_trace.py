"""Issue 24 items 1 and 2 on the real engine: each attempt's figures come from its container's
cgroup, and a shard near its memory limit is warned about, in the run's summary and in
`runs show --trace`, packed or not."""

from __future__ import annotations

import json

from workspace import Workspace, workspace_fixture  # noqa: F401

MIB = 1 << 20
BIG_MIB = 56  # of a 64m limit: with the interpreter, past 90 %

# Shard "big" fills BIG_MIB of memory, "small" 4 MiB; both spin the CPU for 0.3 s and
# write 4 MiB to their output with O_DIRECT (block I/O the kernel charges to them).
HOG_PY = f"""\
import sys, time
b = bytearray(({BIG_MIB} if sys.argv[1] == "big" else 4) << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
time.sleep(0.3)
"""
HOG = """\
name: hog
inputs: {tools: {type: directory}}
outputs: {out: {type: directory}}
command: [sh, -c, 'dd if=/dev/zero of="$1/$2.bin" bs=1M count=4 oflag=direct 2>/dev/null &&
  exec python3 "$3" "$2"', hog, '${{outputs.out}}', '${{shard.value}}',
  '${{inputs.tools}}/hog.py']
array: {values: [small, big]}
resources: {memory: 64m}
"""


def test_a_shard_near_its_memory_limit_is_warned_about_with_its_figures(
    workspace: Workspace,
) -> None:
    spec = workspace.spec(HOG)
    tools = "tools=" + str(workspace.folder("tools", {"hog.py": HOG_PY}))
    done = workspace.cli("run", str(spec), "-i", tools, "-o", f"out={workspace.root / 'out'}")
    assert done.returncode == 0, done.stderr
    assert "warning: shard 1 peaked at" in done.stderr, done.stderr
    assert "of its memory limit 64.0 MiB" in done.stderr and "shard 0 peaked" not in done.stderr
    assert "suggested resources.memory: " in done.stderr

    shards = workspace.shards()
    big, small = (shards[i].attempts[-1].trace for i in (1, 0))
    assert big is not None and small is not None
    assert big.peak_memory_bytes is not None and big.peak_memory_bytes >= BIG_MIB * MIB
    assert big.peak_memory_bytes >= 0.9 * 64 * MIB and not big.packed
    assert small.peak_memory_bytes is not None
    assert 4 * MIB <= small.peak_memory_bytes < 0.9 * 64 * MIB
    for t in (big, small):
        assert t.cpu_seconds is not None and t.cpu_seconds >= 0.2  # the 0.3 s busy loop
        assert t.wall_seconds is not None and t.cpu_seconds <= t.wall_seconds + 0.1
        assert t.wall_seconds >= 0.6
        # v1 counts block I/O only once a throttle rule was set on the disk: else None.
        assert t.write_bytes is None or t.write_bytes >= 4 * MIB

    shown = workspace.cli("runs", "show", "last", "--trace", "--json")
    data = json.loads(shown.stdout)
    assert [s["shard"] for s in data["shards"]] == [1, 0]  # by peak
    assert [w["shard"] for w in data["warnings"]] == [1]
    assert data["suggested_memory_bytes"] >= 1.25 * big.peak_memory_bytes

    # Packed: each value keeps its own wall time and carries its batch container's figures.
    packed = workspace.cli(
        "run", str(spec), "-i", tools, "--batch-size", "2", "--no-cache",
        "-o", f"out={workspace.root / 'p'}",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    assert "warning: shard 1 peaked at" in packed.stderr
    values = workspace.shards()
    traces = [values[i].attempts[-1].trace for i in (0, 1)]
    assert all(t is not None and t.packed for t in traces), traces
    first, last = traces
    assert first is not None and last is not None
    assert first.wall_seconds is not None and 0.3 <= first.wall_seconds < 5
    assert last.peak_memory_bytes is not None and last.peak_memory_bytes >= BIG_MIB * MIB
    assert last.cpu_seconds is not None and first.cpu_seconds is not None
    assert last.cpu_seconds >= first.cpu_seconds + 0.2  # the batch's CPU up to each value's end
