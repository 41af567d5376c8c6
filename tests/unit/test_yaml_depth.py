"""Issue 20, item 8b: YAML nested thousands of levels deep is refused in one located line
with exit 2, quickly, never with RecursionError (PyYAML's composer recurses per level)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import CONTAINEREXEC

from containerexec.formats.azureml import load_image_map
from containerexec.model.yamlsource import MAX_DEPTH, parse

MODULE = """\
name: ok
environment: {image: containerexec/base:bookworm}
command: [echo, hi]
"""
COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: deep
environment: azureml:text-tools
command: echo hi
"""
AML_PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
jobs: {}
"""
LEVELS = 5000


def lists(levels: int = LEVELS) -> str:
    return "[" * levels + "]" * levels


def mappings(levels: int = LEVELS) -> str:
    return "{a: " * levels + "1" + "}" * levels


def blocks(levels: int = 1500) -> str:
    """Block style: each level one more indented `- `."""
    return "\n" + "".join("  " * i + "-\n" for i in range(1, levels))


def _cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run(
        [CONTAINEREXEC, *args], capture_output=True, text=True, timeout=60, check=False
    )
    return out, time.monotonic() - started


def _refused(out: subprocess.CompletedProcess[str], path: Path) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "RecursionError" not in out.stderr, out.stderr
    assert re.search(
        rf"{re.escape(str(path))}:\d+:\d+: .*nested more than {MAX_DEPTH} levels deep",
        out.stderr,
    ), out.stderr


@pytest.mark.parametrize("deep", [lists, mappings, blocks], ids=["lists", "mappings", "blocks"])
def test_validate_refuses_a_deep_module_spec(tmp_path: Path, deep: object) -> None:
    spec = tmp_path / "deep.yaml"
    spec.write_text(MODULE + "extra: " + deep() + "\n")  # type: ignore[operator]
    out, _ = _cli("validate", str(spec))
    _refused(out, spec)


def test_pipeline_validate_refuses_a_deep_pipeline(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(MODULE)
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("name: p\njobs:\n  a: {module: ok.yaml, inputs: {x: " + lists() + "}}\n")
    out, _ = _cli("pipeline", "validate", str(pipe))
    _refused(out, pipe)


def test_a_deep_azure_ml_component_is_refused(tmp_path: Path) -> None:
    comp = tmp_path / "comp.yml"
    comp.write_text(COMPONENT + "tags: " + mappings() + "\n")
    out, _ = _cli("validate", str(comp), "--image-map", "text-tools=containerexec/base:bookworm")
    _refused(out, comp)


def test_a_deep_azure_ml_pipeline_is_refused(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.yml"
    pipe.write_text(AML_PIPELINE + "inputs: " + lists() + "\n")
    out, _ = _cli("pipeline", "validate", str(pipe))
    _refused(out, pipe)


def test_fifty_megabytes_of_brackets_are_refused_fast(tmp_path: Path) -> None:
    spec = tmp_path / "brackets.yaml"
    spec.write_text("[" * 50_000_000)
    out, took_s = _cli("validate", str(spec))
    _refused(out, spec)
    assert took_s < 15, took_s


def test_a_deep_image_map_file_is_a_usage_error(tmp_path: Path) -> None:
    images = tmp_path / "images.yaml"
    images.write_text("a: " + lists() + "\n")
    with pytest.raises(Exception, match=f"nested more than {MAX_DEPTH} levels") as info:
        load_image_map([str(images)])
    assert getattr(info.value, "exit_code", None) == 2


def test_aliases_cannot_stack_past_the_limit() -> None:
    """Each alias adds its anchor's depth: 90 levels, aliased inside 90 more, and so on."""
    text = "a0: &a0 " + "[" * 90 + "1" + "]" * 90 + "\n"
    for n in range(1, 30):
        text += f"a{n}: &a{n} " + "[" * 90 + f"*a{n - 1}" + "]" * 90 + "\n"
    src = parse(text, "alias.yaml")
    assert src.data is None
    (problem,) = src.problems
    assert f"nested more than {MAX_DEPTH} levels" in problem.message
    assert problem.loc.startswith("a1[0]") and problem.loc.endswith("...")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_DEPTH - 2  # the top-level mapping and the scalar are levels too
    assert parse("x: " + "[" * (depth + 1) + "1" + "]" * (depth + 1), "no.yaml").problems
    src = parse("x: " + "[" * depth + "1" + "]" * depth + "\n", "ok.yaml")
    assert not src.problems
    value = src.data["x"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == [1]
