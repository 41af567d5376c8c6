"""A packed batch on the FakeEngine: its records made durable file by file (never os.sync of the
whole machine), and the watchdog timed on the monotonic clock."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeEngine

from containerexec.engine.base import StartFailed
from containerexec.model.arrays import Shard
from containerexec.model.invocation import Invocation, Limits
from containerexec.model.spec import parse_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.packing import batch as packing
from containerexec.store.tree import RunStore

SPEC = (
    "name: fake\nenvironment: {image: containerexec/base:bookworm}\n"
    "outputs: {out: {type: directory}}\ncommand: ['true', '${{shard.index}}']\n"
    "array: {range: 4, batch_size: 2, max_parallel: 1}\n"
)


class NoDriver(FakeEngine):
    """Runs packing's image check, but refuses to start a batch's driver."""

    def start(self, container_id: str) -> None:
        if not self.containers_by_id[container_id].inv.argv[-1].endswith("driver.sh"):
            return super().start(container_id)
        raise StartFailed(container_id, "permission denied", command_not_found=False)


def test_a_batch_fsyncs_its_own_records_and_never_syncs_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    fsync = os.fsync

    def record_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    def no_sync() -> None:
        raise AssertionError("os.sync() flushes the whole machine")

    monkeypatch.setattr(os, "sync", no_sync)
    monkeypatch.setattr(os, "fsync", record_fsync)
    store = RunStore(tmp_path / "runs")
    executor = Executor(NoDriver(), store, sleep=lambda s: None)
    spec = parse_spec(SPEC, "fake.yaml")
    out = {"out": str(tmp_path / "out")}
    result = executor.start(spec, {}, out, options=RunOptions()).wait()

    assert result.record.counts == {"failed": 4}
    for shard in result.failed:
        assert "permission denied" in (shard.attempts[-1].message or ""), shard.attempts
    run_id = result.record.run_id
    shards = [str(store.shard_path(run_id, i)) for i in range(4)]
    assert set(shards) <= set(synced)
    assert str(store.shard_path(run_id, 0).parent) in synced


class Stops(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.stops: list[str] = []

    def stop(self, container_id: str, *, grace_s: float) -> None:
        self.stops.append(container_id)


def test_the_watchdog_counts_from_when_it_saw_the_start_on_the_monotonic_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [5000.0]
    monkeypatch.setattr(packing.time, "monotonic", lambda: now[0])
    engine = Stops()
    ex = SimpleNamespace(store=RunStore(tmp_path / "runs"), engine=engine)
    run: Any = SimpleNamespace(id="r", services=ex, record=SimpleNamespace(grace_s=5.0))
    shard = Shard(0, "0", 1)
    batch = packing.Batch(run, [shard])
    inv = Invocation(
        run_id="r", module="m", image="i", user="0:0", name="n", argv=["true"],
        limits=Limits(timeout_s=10),
    )  # fmt: skip
    value = packing.Value(shard, SimpleNamespace(invocation=inv), tmp_path)  # type: ignore[arg-type]
    batch._watchdog(value, "c1")  # not started yet
    status = batch.root / "state" / "status"
    status.parent.mkdir(parents=True)
    # The driver says it started at uptime 1 s: long ago on the wall clock (a clock jump).
    status.write_text(f"S {value.name} 1.00\n")
    batch._watchdog(value, "c1")
    now[0] += 10 + 5 + 30
    batch._watchdog(value, "c1")
    assert engine.stops == []
    now[0] += 1
    batch._watchdog(value, "c1")
    assert engine.stops == ["c1"]


def test_the_status_file_takes_whole_lines_only(tmp_path: Path) -> None:
    """run/packing/status.py: a line without its newline yet (or never: the container died
    while writing it) is not taken; uptimes become wall times on this machine's clock."""
    from containerexec.run.packing.status import StatusFile

    path = tmp_path / "status"
    said = StatusFile(path)
    said.poll()  # no file yet: nothing said
    path.write_text("S 000000 100.50\nE 000000 3 1 1")
    said.poll()
    assert said.started == {"000000": pytest.approx(said.offset + 100.5)}
    assert said.ended == {}
    with path.open("a") as f:
        f.write("01.25\nnoise\nS 000001 101.30\nE 0000")
    said.poll()
    assert said.ended == {"000000": (3, 1, pytest.approx(said.offset + 101.25))}
    assert set(said.started) == {"000000", "000001"} and "0000" not in said.ended
    assert abs(said.offset + float(Path("/proc/uptime").read_text().split()[0]) - time.time()) < 1


def test_the_status_file_says_which_files_hold_a_values_output(tmp_path: Path) -> None:
    """The sh driver reuses one stdout/stderr pair while values print nothing (a file
    creation cost more than running `true`): S names the pair, E says `-` when the value
    printed nothing (the pair is the next value's: never read as this one's log) or names
    the pair it leaves behind. The Python driver's lines name no pair: NNNNNN.out/.err."""
    from containerexec.run.packing.status import StatusFile

    path = tmp_path / "status"
    path.write_text(
        "S 000000 1.00 000000\nE 000000 0 0 1.01 -\n"
        "S 000001 1.01 000000\nE 000001 0 0 1.02 000000\n"
        "S 000002 1.02 000002\nE 000002 1 0 1.03 -\n"
        "S 000003 1.03 000002\n"
        "S 000004 1.04\nE 000004 0 0 1.05\n"
    )
    said = StatusFile(path)
    said.poll()
    assert said.files == {
        "000000": None,
        "000001": "000000",
        "000002": None,
        "000003": "000002",  # running (or died running): its output is in the pair it was given
        "000004": "000004",
    }
    assert said.ended["000002"] == (1, 0, pytest.approx(said.offset + 1.03))
