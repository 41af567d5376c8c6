"""Issue 10, item 7: a YAML alias bomb is refused quickly, located, with exit 2.

Nine levels of nine `*name` aliases expand to 9**9 values; PyYAML composes them as a
small graph, so the bound has to hold while containerexec walks that graph.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import CONTAINEREXEC

from containerexec.errors import SpecError
from containerexec.model.spec import parse_spec
from containerexec.model.yamlsource import MAX_NODES, parse

MODULE = """\
name: ok
environment: {image: containerexec/base:bookworm}
command: [echo, hi]
"""


def bomb(levels: int = 9) -> str:
    """`l0: &l0 [lol x9]`, then each level nine aliases of the one before."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run(
        [CONTAINEREXEC, *args], capture_output=True, text=True, timeout=20, check=False
    )
    return out, time.monotonic() - started


def test_validate_refuses_a_module_alias_bomb(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text(MODULE)
    bad = tmp_path / "bomb.yaml"
    bad.write_text(MODULE + bomb())
    ok, normal_s = _cli("validate", str(good))
    assert ok.returncode == 0, ok.stderr
    out, bomb_s = _cli("validate", str(bad))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert re.search(
        rf"{re.escape(str(bad))}:\d+:\d+: l\d[\[\]\d]*: more than {MAX_NODES:,}", out.stderr
    ), out.stderr
    assert "alias" in out.stderr and "Traceback" not in out.stderr
    assert bomb_s < 20 * normal_s, (bomb_s, normal_s)


def test_pipeline_validate_refuses_an_alias_bomb(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(MODULE)
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("name: p\njobs:\n  a: {module: ok.yaml}\n" + bomb())
    out, _ = _cli("pipeline", "validate", str(pipe))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert re.search(rf"{re.escape(str(pipe))}:\d+:\d+: l\d[\[\]\d]*: more than", out.stderr)
    assert "alias" in out.stderr and "Traceback" not in out.stderr


def test_a_bomb_in_a_key_is_refused_too() -> None:
    src = parse("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + bomb() + "? *l8\n: 1\n", "k.yaml")
    assert src.problems and "alias" in src.problems[0].message


def test_a_large_but_honest_spec_is_accepted() -> None:
    """The bound leaves room: 12,000 array values written out (more than 10,000 nodes) are fine."""
    values = ", ".join(f"v{i}" for i in range(12_000))
    spec = parse_spec(MODULE + f"array: {{values: [{values}]}}\n", "big.yaml")
    assert spec.array is not None


def test_aliases_within_the_bound_still_work() -> None:
    src = parse("base: &b {cpus: 1}\nresources: *b\n", "a.yaml")
    assert not src.problems
    assert src.data == {"base": {"cpus": 1}, "resources": {"cpus": 1}}


def test_parse_spec_raises_a_located_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(MODULE + bomb(), "b.yaml")
    (problem,) = info.value.problems
    assert problem.path == "b.yaml" and problem.line > 3
