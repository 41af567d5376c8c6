"""Packing's pure parts: the batch size, the batches, and the sh scripts (run with sh here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from containerexec.cli import cli
from containerexec.model.arrays import Shard
from containerexec.model.invocation import Invocation
from containerexec.model.spec import ModuleSpec
from containerexec.run.packing.planner import choose, packed, plan, regroup, task_size, tasks
from containerexec.run.packing.scripts import driver_script, output_links, quote, value_script

WEIRD = ["a b", "it's", 'q"uote', "semi;colon", "new\nline", "$HOME", "*", "", "\\", "'"]


def spec(batch: object) -> ModuleSpec:
    array: dict[str, object] = {"range": 10}
    if batch is not None:
        array["batch_size"] = batch
    return ModuleSpec.model_validate(
        {
            "name": "m",
            "version": "1",
            "environment": {"image": "x"},
            "command": ["true"],
            "array": array,
        }
    )


def invocation(argv: list[str], **fields: Any) -> Invocation:
    """A bare Invocation running `argv`, with `fields` (env, mounts) on top."""
    return Invocation(run_id="r", module="m", image="i", user="0:0", name="n", argv=argv, **fields)


def test_choose_batch_size() -> None:
    assert choose(spec(None), 10_000, 2) == 1
    assert choose(spec(50), 10_000, 2) == 50
    assert choose(spec(50), 7, 2) == 7  # never more than the shards to do
    assert choose(spec(50), 1, 2) == 1  # one shard: its own container, as today
    assert choose(spec("auto"), 10_000, 2) == 1000  # capped
    assert choose(spec("auto"), 1000, 2) == 250  # about 2 batches per container slot
    assert choose(spec("auto"), 6, 2) == 2
    assert choose(spec("auto"), 4, 2) == 1  # as many batches as slots twice over


def test_plan_keeps_order() -> None:
    shards = [Shard(i, str(i), 5) for i in range(5)]
    assert [[s.index for s in b] for b in plan(shards, 2)] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("word", WEIRD)
def test_quote_is_one_word_that_sh_does_not_expand(word: str) -> None:
    out = subprocess.run(
        ["/bin/sh", "-c", f"printf '%s\\0' {quote(word)}"], capture_output=True, check=True
    )
    assert out.stdout.decode() == word + "\0"


def test_a_value_script_sets_its_env_and_execs_its_exact_argv() -> None:
    inv = invocation(["printf", "%s\\0", *WEIRD], env={"A": "it's $HOME", "B": "x\ny"})
    text = value_script(inv, [], "/unused")
    assert "\nexec setsid 'printf' '%s\\0' 'a b' 'it'\\''s' " in text
    out = subprocess.run(["/bin/sh", "-c", text], capture_output=True, check=True)
    assert out.stdout.decode().split("\0")[:-1] == WEIRD
    env = subprocess.run(
        ["/bin/sh", "-c", text.replace("exec setsid 'printf'", "exec env #")],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert "A=it's $HOME\n" in env and "B=x\ny\n" in env
    timed = value_script(inv, [], "/unused", timeout_s=2.5, grace_s=3)
    assert "exec setsid timeout -k 3 2.5 'printf'" in timed


def test_the_driver_is_valid_sh_and_runs_values_in_order() -> None:
    scripts = [
        (f"{i:06d}", value_script(invocation(["sh", "-c", f"echo {i}"]), [], "/u")) for i in (3, 4)
    ]
    text = driver_script(scripts)
    assert subprocess.run(["/bin/sh", "-n", "-c", text], check=False).returncode == 0
    assert text.index("cx_one 000003") < text.index("cx_one 000004")
    # Never run the driver here: its sweep signals every process it can see but init and
    # itself, which is the container's and only the container's (tests/engine runs it).
    assert text.count("cx_v() {") == 2 and "'echo 3'" in text.split("cx_one 000003")[0]


def test_output_links_name_the_staging_folder_each_mount_comes_from() -> None:
    """The returned value's mount is /outputs/.containerexec-returned from <staging>/.returned:
    a packed value must write where the host reads it (issue 22: 0 of 100 values came back)."""
    from containerexec.model.invocation import Mount
    from containerexec.run import returned

    mounts = [
        Mount(kind="output", name="out", source="/s/7/out", target="/outputs/out", read_only=False),
        Mount(kind="input", name="data", source="/d", target="/inputs/data", read_only=True),
    ]
    inv = invocation(["x"], mounts=mounts, env={returned.ENV_FILE: returned.CONTAINER_FILE})
    inv = returned.mounted(inv, Path("/s/7"))
    assert output_links(inv) == [(".containerexec-returned", ".returned"), ("out", "out")]


def test_batch_size_refused_when_below_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: m\nenvironment: {image: x}\ncommand: ['true']\narray: {range: 3, batch_size: 0}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "array.batch_size" in result.output and "must be >= 1 or 'auto'" in result.output


def test_tasks_pack_as_the_spec_asks_unless_the_run_cannot() -> None:
    shards = [Shard(i, str(i), 10) for i in range(10)]
    sizes = [len(t) for t in tasks(spec(4), shards, 2)]
    assert sizes == [4, 4, 2]
    assert [len(t) for t in tasks(spec(None), shards, 2)] == [1] * 10
    assert [len(t) for t in tasks(spec(4), shards, 2, packable=False)] == [1] * 10  # a replay
    assert tasks(spec(4), [], 2) == []


def test_packed_task_size_and_regroup() -> None:
    shards = [Shard(i, str(i), 7) for i in range(7)]
    planned = plan(shards, 3)
    assert packed(planned) and task_size(planned) == 3
    assert not packed(plan(shards, 1)) and task_size(plan(shards, 1)) == 1
    assert task_size([]) == 1
    again = regroup([shards[1], shards[4], shards[5], shards[6]], planned)
    assert [[s.index for s in t] for t in again] == [[1, 4, 5], [6]]  # no larger than before


def test_python_values_share_an_interpreter_only_when_all_run_one_module(tmp_path: Path) -> None:
    """pyvalues.shared: the `python3 -c <launch>` of one entry; the env they share is written
    once to batch.json and each value keeps its own variables, argv and links."""
    from containerexec.authoring.functions import ENV_ENTRY, LAUNCH
    from containerexec.run.packing import pyvalues

    def inv(i: int, entry: str = '{"object": "f"}', argv0: str = "python3") -> Invocation:
        env = {ENV_ENTRY: entry, "BIG": "x" * 100, "CONTAINEREXEC_SHARD_INDEX": str(i)}
        return invocation([argv0, "-c", LAUNCH, f"index={i}"], env=env)

    assert pyvalues.ENTRY == ENV_ENTRY
    assert pyvalues.shared([inv(0), inv(1)])
    assert not pyvalues.shared([inv(0), inv(1, entry='{"object": "g"}')])
    assert not pyvalues.shared([inv(0), inv(1, argv0="python3.11")])
    assert not pyvalues.shared([invocation(["true"])])
    argv = pyvalues.write(
        tmp_path, [("000000", inv(0)), ("000001", inv(1))], timeout_s=None, grace_s=2.0
    )
    assert argv == ["python3", "-I", "/.containerexec-batch/ctl/driver.py"]
    batch = json.loads((tmp_path / "batch.json").read_text())
    assert batch["names"] == ["000000", "000001"] and batch["env"]["BIG"] == "x" * 100
    assert batch["values"]["000001"] == {
        "argv": ["python3", "-c", LAUNCH, "index=1"],
        "env": {"CONTAINEREXEC_SHARD_INDEX": "1"},
        "links": [],
    }
    assert (tmp_path / "driver.py").read_text().startswith('"""In-container driver')
