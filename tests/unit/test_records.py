"""Run records: JSON round-trips, atomic writes, schema versions, run ids and the run lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerexec.errors import RecordError, RunLocked
from containerexec.model.invocation import Invocation
from containerexec.store.records import (
    SCHEMA_VERSION,
    ImageRecord,
    RunRecord,
    ShardRecord,
    write_json,
)
from containerexec.store.tree import RunStore


def run_record(run_id: str = "wc-20260101-000000-aaaaaa", **changes: object) -> RunRecord:
    base = RunRecord(
        run_id=run_id,
        module="wc",
        version="1.0.0",
        spec_path="specs/wc.yaml",
        spec={"name": "wc"},
        image=ImageRecord(
            ref="containerexec/wc:ctx-1",
            pinned="sha256:" + "1" * 64,
            id="sha256:" + "1" * 64,
            source="build",
        ),
        inputs={"corpus": "/data"},
        outputs={"counts": "/out"},
        secret_names=["TOKEN"],
        shard_count=2,
        max_parallel=2,
        state="running",
        started_at=1.0e9,
    )
    return base.model_copy(update=changes)


def shard_record(run_id: str, index: int, state: str = "succeeded") -> ShardRecord:
    inv = Invocation(
        run_id=run_id,
        module="wc",
        image="sha256:" + "1" * 64,
        argv=["true"],
        user="1:1",
        name=f"cx-{run_id}-{index}",
        shard_index=index,
        shard_count=2,
    )
    return ShardRecord.model_validate(
        {
            "run_id": run_id,
            "index": index,
            "value": str(index),
            "state": state,
            "log_path": f"/logs/{index}.log",
            "invocation": inv.model_dump(mode="json"),
        }
    )


def test_run_and_shard_records_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rec = run_record()
    path = store.write_run(rec)
    store.write_shard(shard_record(rec.run_id, 1, "failed"))
    store.write_shard(shard_record(rec.run_id, 0))
    assert path == tmp_path / "runs" / rec.run_id / "run.json"
    assert store.load_run(rec.run_id) == rec
    shards = store.load_shards(rec.run_id)
    assert sorted(shards) == [0, 1]
    assert shards[1].state == "failed"
    assert shards[0].invocation.argv == ["true"]


def test_records_carry_the_schema_version_and_sorted_keys(tmp_path: Path) -> None:
    path = RunStore(tmp_path).write_run(run_record())
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert list(data) == sorted(data)


def test_a_record_from_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.write_run(run_record())
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="newer containerexec.*upgrade containerexec") as info:
        store.load_run("last")
    assert info.value.schema_version == SCHEMA_VERSION + 1


def test_a_corrupt_record_names_its_path(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.write_run(run_record())
    path.write_text("{not json")
    with pytest.raises(RecordError, match=f"{path}: unreadable record"):
        store.load_run(run_record().run_id)


def test_a_record_with_a_wrong_field_names_the_field(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.write_run(run_record())
    data = json.loads(path.read_text())
    data["shard_count"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="not a valid record: shard_count"):
        store.load_run(run_record().run_id)


def test_write_json_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "x" / "a.json"
    for n in range(3):
        write_json(target, {"n": n})
    assert json.loads(target.read_text()) == {"n": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_run_ids_resolve_by_prefix_and_last(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write_run(run_record("wc-1-aaa"))
    time.sleep(0.01)
    store.write_run(run_record("wc-2-bbb"))
    assert store.ids() == ["wc-1-aaa", "wc-2-bbb"]
    assert store.resolve_id("wc-1") == "wc-1-aaa"
    os.utime(store.run_dir("wc-1-aaa") / "run.json", (2e9, 2e9))
    assert store.resolve_id("last") == "wc-1-aaa"
    with pytest.raises(RecordError, match="'wc-' matches 2 runs: wc-1-aaa, wc-2-bbb; give more"):
        store.resolve_id("wc-")
    with pytest.raises(RecordError, match="no run 'zz'; 'containerexec runs list'"):
        store.resolve_id("zz")


def test_last_with_no_runs_says_so(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no runs recorded here yet"):
        RunStore(tmp_path).resolve_id("last")


def test_the_run_lock_refuses_a_second_holder_and_names_the_pid(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.lock("r1"), pytest.raises(RunLocked) as info, store.lock("r1"):
        pass
    assert info.value.pid == os.getpid()
    assert f"held by process {os.getpid()}" in str(info.value)
    with store.lock("r1"):  # released on exit
        pass


def test_the_run_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    code = (
        "import sys, time; from pathlib import Path\n"
        "from containerexec.store.tree import RunStore\n"
        f"lock = RunStore(Path({str(tmp_path)!r})).lock('r1').__enter__()\n"
        "print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"process {proc.pid}"), store.lock("r1"):
            pass
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with store.lock("r1"):  # no manual unlock after SIGKILL
        pass


def test_a_running_run_no_process_holds_is_listed_as_interrupted(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from containerexec.cli import cli

    store = RunStore(tmp_path)
    store.write_run(run_record())
    store.write_shard(shard_record("wc-20260101-000000-aaaaaa", 0, state="running"))

    def listing() -> str:
        result = CliRunner().invoke(cli, ["--runs-dir", str(tmp_path), "runs", "list"])
        assert result.exit_code == 0, result.output
        return result.output

    with store.lock("wc-20260101-000000-aaaaaa"):
        assert " running " in listing()  # held: really in progress
    assert " interrupted " in listing()  # the holder is gone (as after kill -9)
    shown = CliRunner().invoke(cli, ["--runs-dir", str(tmp_path), "runs", "show", "last"])
    assert "state:    interrupted" in shown.output
    assert "     0 interrupted" in shown.output


def test_a_shard_record_left_empty_by_a_crash_is_skipped_only_when_asked(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = "wc-20260101-000000-aaaaaa"
    store.write_shard(shard_record(run_id, 0))
    store.shard_path(run_id, 1).write_text("")  # what a power loss can leave of a new file
    assert [r.index for r in store.iter_shards(run_id, skip_unreadable=True)] == [0]
    with pytest.raises(RecordError):
        list(store.iter_shards(run_id))


def test_last_is_the_newest_run_that_is_not_a_repro(tmp_path: Path) -> None:
    # `repro last` then `run --resume last` must resume the run that failed, not its replay.
    store = RunStore(tmp_path)
    store.write_run(run_record("wc-20260101-000000-aaaaaa"))
    replay = run_record("wc-repro-20260101-000001-bbbbbb", repro_of="wc-20260101-000000-aaaaaa")
    path = store.write_run(replay)
    os.utime(path, (time.time() + 5, time.time() + 5))  # the replay is the newest record
    assert store.resolve_id("last") == "wc-20260101-000000-aaaaaa"
    # only replays recorded: 'last' is the newest of them, not an error
    only = RunStore(tmp_path / "other")
    only.write_run(replay)
    assert only.resolve_id("last") == replay.run_id
