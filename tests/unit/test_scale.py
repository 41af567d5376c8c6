"""A 10,000-shard array plans in one pass, and memory grows linearly in shards, not worse.

No timing is asserted: the machine's speed varies. Memory is measured in fresh
child processes (bench/scale.py --child), so each peak RSS belongs to one size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from containerexec.labels import LABEL_SHARD
from containerexec.model import arrays
from containerexec.model.bindings import bind
from containerexec.model.invocation import resolve
from containerexec.model.spec import parse_spec

SCALE = Path(__file__).resolve().parents[2] / "bench" / "scale.py"
SMALL, LARGE = 1_000, 10_000

SPEC = f"""name: scale
environment: {{image: containerexec/base:bookworm, pull: never}}
outputs:
  out: {{type: directory}}
command: ["/bin/true", "${{{{shard.value}}}}", "${{{{outputs.out}}}}/${{{{shard.index}}}}.tsv"]
array: {{range: {LARGE}}}
"""


def measure(mode: str, n: int) -> dict[str, Any]:
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


def test_a_10000_shard_array_expands_selects_and_resolves_every_shard(tmp_path: Path) -> None:
    spec = parse_spec(SPEC, "scale.yaml")
    bindings = bind(spec, {}, {}, default_outputs=tmp_path / "out")
    shards = arrays.expand(spec.array, bindings.inputs)
    selected = arrays.select(shards, f"0-{LARGE - 1}")
    invocations = [
        resolve(spec, bindings, s, run_id="r", image="img", staging=tmp_path / "st", user="1:1")
        for s in selected
    ]
    assert len(invocations) == LARGE
    assert len({inv.name for inv in invocations}) == LARGE
    last = invocations[-1]
    assert last.argv == ["/bin/true", str(LARGE - 1), f"/outputs/out/{LARGE - 1}.tsv"]
    assert last.env["CONTAINEREXEC_SHARD_COUNT"] == str(LARGE)
    assert last.labels[LABEL_SHARD] == str(LARGE - 1)
    assert [s.index for s in arrays.select(shards, "9990-9999")] == list(range(9990, LARGE))


@pytest.mark.parametrize(("mode", "small", "large"), [("plan", SMALL, LARGE), ("run", 500, 5_000)])
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
