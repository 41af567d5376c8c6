"""Issue 20, item 8a: each packed value runs in a process group of its own, and what it
leaves running (`cmd &`, a daemon that left its group) is killed before the next value
starts, so nothing it leaves behind writes into the next value's output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import run_status

IDX = "$CONTAINEREXEC_SHARD_INDEX"
# Value 0 starts two writers that never end: one in its group, one in a session of its
# own (as a daemon would), each appending to /outputs/out (value 0's folder, then the
# next value's once the driver relinks it) and to value 1's staging folder by its path.
# Value 1 waits, then records what it finds in its own folder and which writers live.
LOOP = (
    'while :; do echo t >> "$1/$2"; echo d >> /.containerexec-batch/stage/000001/out/direct '
    "2>/dev/null; sleep 0.05; done"
)
SCRIPT = f"""
m=stray  # the writers' $0 is $m-marker, a name this script's own text never holds
if [ "{IDX}" = 0 ]; then
  sh -c '{LOOP}' "$m-marker" "$1" tick &
  setsid sh -c '{LOOP}' "$m-marker" "$1" daemon </dev/null >/dev/null 2>&1 &
  sleep 0.5
  echo zero > "$1/0"
else
  sleep 1.5
  seen=$(ls -A "$1")
  printf '%s' "$seen" > "$1/seen1"
  n=0
  for p in /proc/[0-9]*; do
    if grep -q 'stray[-]marker' "$p/cmdline" 2>/dev/null; then n=$((n + 1)); fi
  done
  echo "$n" > "$1/strays1"
fi
"""


def run_packed(workspace: Workspace, script: str, values: int) -> tuple[Path, dict[int, Any]]:
    """Run `sh -c SCRIPT strays OUT` over `values` values packed in one container."""
    spec = workspace.spec(
        "name: strays\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [sh, -c, {json.dumps(script)}, strays, '${{{{outputs.out}}}}']\n"
        f"array: {{range: {values}, batch_size: {values}, max_parallel: 1}}\n"
    )
    out = workspace.root / "out"
    _, _, result = workspace.run(spec, {}, {"out": str(out)})
    shards = workspace.shards()
    assert run_status(result.record) == 0, (
        result.record.reason,
        {i: (s.state, s.exit_code, s.attempts[-1].message) for i, s in shards.items()},
    )
    return out, shards


def test_a_value_leaves_nothing_running_that_writes_into_the_next_value(
    workspace: Workspace,
) -> None:
    out, shards = run_packed(workspace, SCRIPT, 2)
    assert [shards[i].state for i in (0, 1)] == ["succeeded", "succeeded"]
    # Value 1's folder was empty when it looked, and no writer of value 0 was alive.
    assert (out / "seen1").read_text() == ""
    assert (out / "strays1").read_text() == "0\n"
    assert not (out / "direct").exists()
    # Value 0 keeps what its writers wrote while it ran.
    assert sorted(os.listdir(out)) == ["0", "daemon", "seen1", "strays1", "tick"]
    assert (out / "tick").stat().st_size > 0 and (out / "daemon").stat().st_size > 0


def test_a_value_that_leaves_nothing_behind_is_not_slowed(workspace: Workspace) -> None:
    """The sweep costs nothing when no process is left: 20 values well under a second each."""
    out, shards = run_packed(workspace, f'echo {IDX} > "$1/{IDX}"', 20)
    spans = [shards[i].attempts[0].ended_at - shards[i].attempts[0].started_at for i in range(20)]
    assert max(spans) < 0.5, spans
    assert sorted(os.listdir(out), key=int) == [str(i) for i in range(20)]
