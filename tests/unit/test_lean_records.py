"""Issue 22 item 4: lean records. A Python module's boot script and source are kept once per
run (RunRecord.shared_env) and named by sha256 in each shard record, so a 200-value @module
array's shard records weigh at most 3 KB each; repro, export and bundles put them back.
Records are ours, so tests/fakes.FakeEngine plays the containers; a printed repro script of
a lean record runs on the real engine in tests/engine/test_repro_print.py."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, python_shard

from containerexec.authoring.functions import ENV_BOOT, ENV_SOURCE, entry_text
from containerexec.authoring.targets import load_target
from containerexec.errors import UntrustedInput
from containerexec.repro.planning import pick_shard
from containerexec.run.executor import RunOptions
from containerexec.store.export import export_run, load_source
from containerexec.store.records import write_json
from containerexec.store.tree import RunStore

SOURCE = '''\
"""Tags each value: a module of the usual size, with a docstring and a helper."""

from containerexec.authoring import OutputDir, ShardValue, module

VALUES = [f"value-{i:03d}" for i in range(200)]


def _label(value: str) -> str:
    """The text written for one value; long enough to be a real helper."""
    return f"{value}: " + ", ".join(part.upper() for part in value.split("-"))


@module(image="containerexec/base:bookworm", array={"values": VALUES, "max_parallel": 8})
def tag(value: ShardValue, out: OutputDir) -> str:
    """Writes one label per value and returns it."""
    text = _label(value)
    (out / f"{value}.txt").write_text(text)
    return text
'''
MAX_SHARD_BYTES = 3 * 1024


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, FakeEngine]:
    """A 200-value @module run on the fake engine, once: its runs folder, id and engine."""
    root = tmp_path_factory.mktemp("lean")
    path = root / "tagmods.py"
    path.write_text(textwrap.dedent(SOURCE))
    engine = FakeEngine(python_shard)
    result = load_target(f"{path}:tag").run(
        out=root / "out",
        runs_dir=root / "runs",
        engine=engine,
        options=RunOptions(max_parallel=8),
    )
    return root / "runs", result.record.run_id, engine


@pytest.fixture
def lean_run(ran: tuple[Path, str, FakeEngine], tmp_path: Path) -> tuple[RunStore, str, FakeEngine]:
    """The run's store, in a copy of its own (a test may edit the records)."""
    runs, run_id, engine = ran
    return RunStore(shutil.copytree(runs, tmp_path / "runs")), run_id, engine


def sent(engine: FakeEngine, index: int) -> dict[str, str]:
    """The env the engine was given for shard `index`."""
    return next(inv.env for inv in engine.created if inv.shard_index == index)


def test_shard_records_of_a_200_value_module_weigh_at_most_3_kb(
    lean_run: tuple[RunStore, str, FakeEngine],
) -> None:
    store, run_id, engine = lean_run
    files = sorted((store.run_dir(run_id) / "shards").glob("*.json"))
    sizes = {f.name: f.stat().st_size for f in files}
    assert len(sizes) == 200
    assert max(sizes.values()) <= MAX_SHARD_BYTES, max(sizes.items(), key=lambda kv: kv[1])
    # The boot script and the source are in the run record, once each, and in no shard record.
    boot, source = sent(engine, 0)[ENV_BOOT], sent(engine, 0)[ENV_SOURCE]
    assert boot == entry_text()
    run_json = (store.run_dir(run_id) / "run.json").read_text()
    assert sorted(json.loads(run_json)["shared_env"].values()) == sorted([boot, source])
    first = json.loads(files[0].read_text())
    assert sorted(first["env_shared"]) == [ENV_BOOT, ENV_SOURCE]
    assert ENV_BOOT not in first["invocation"]["env"]


def test_repro_and_export_put_the_shared_values_back(
    lean_run: tuple[RunStore, str, FakeEngine], tmp_path: Path
) -> None:
    store, run_id, engine = lean_run
    assert pick_shard(load_source(store, run_id), 7).invocation.env == sent(engine, 7)

    exported = tmp_path / "run-export.json"  # what a bundle carries, too
    write_json(exported, export_run(store, run_id).model_dump(mode="json"))
    # Lean too: the boot script inline would be 10 KB a shard (indentation and each
    # attempt's trace add a little over the shard files' 3 KB).
    assert exported.stat().st_size < 200 * 4 * 1024
    again = pick_shard(load_source(store, str(exported)), 199)
    assert again.invocation.env == sent(engine, 199) and again.env_shared == {}


def test_an_inline_record_stays_readable_and_a_swapped_value_is_refused(
    lean_run: tuple[RunStore, str, FakeEngine],
) -> None:
    store, run_id, engine = lean_run
    path = store.shard_path(run_id, 3)
    old: dict[str, Any] = json.loads(path.read_text())
    old.pop("env_shared")
    old["schema_version"] = 4
    old["invocation"]["env"] = sent(engine, 3)
    path.write_text(json.dumps(old))
    assert pick_shard(load_source(store, run_id), 3).invocation.env == sent(engine, 3)

    run_path = store.run_dir(run_id) / "run.json"
    run = json.loads(run_path.read_text())
    run["shared_env"] = {k: v + "\nimport os" for k, v in run["shared_env"].items()}
    run_path.write_text(json.dumps(run))
    with pytest.raises(UntrustedInput, match="holds no value with sha256"):
        pick_shard(load_source(store, run_id), 4)


def test_a_rewritten_run_record_keeps_the_values_its_shards_name(
    lean_run: tuple[RunStore, str, FakeEngine], tmp_path: Path
) -> None:
    """A resume of changed code rewrites run.json: the earlier shards' values stay in it."""
    store, run_id, engine = lean_run
    fresh = RunStore(tmp_path / "runs")  # another process's store
    record = fresh.load_run(run_id)
    fresh.write_run(record.model_copy(update={"shared_env": {}}))
    assert pick_shard(load_source(fresh, run_id), 5).invocation.env == sent(engine, 5)
