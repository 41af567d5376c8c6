"""A 10,000-shard array expands, selects and resolves every shard in one pass.

No timing is asserted: the machine's speed varies. How memory grows with the number
of shards is measured in tests/slow/test_memory.py (marked `slow`).
"""

from __future__ import annotations

from pathlib import Path

from containerexec.labels import LABEL_SHARD
from containerexec.model import arrays
from containerexec.model.bindings import bind
from containerexec.model.invocation import resolve
from containerexec.model.spec import parse_spec

LARGE = 10_000

SPEC = f"""name: scale
environment: {{image: containerexec/base:bookworm, pull: never}}
outputs:
  out: {{type: directory}}
command: ["/bin/true", "${{{{shard.value}}}}", "${{{{outputs.out}}}}/${{{{shard.index}}}}.tsv"]
array: {{range: {LARGE}}}
"""


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
