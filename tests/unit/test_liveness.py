"""Issue 20, item 7 without an engine: a run is 'still running' only while a live process
holds its lock; a dead owner's run (recorded as running) is exported as it was left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from containerexec.repro import liveness, sources
from containerexec.store.tree import RunStore
from tests.unit.test_repro_offline import RUN_ID, make_run


def _store(tmp_path: Path) -> RunStore:
    """test_repro_offline's recorded run, as if it were still running on this host."""
    store, _ = make_run(tmp_path)
    rec = store.load_run(RUN_ID)
    store.write_run(
        rec.model_copy(
            update={"state": "running", "host": socket.gethostname(), "pid": 999_999_999}
        )
    )
    return store


def test_a_run_whose_owner_died_is_not_running(tmp_path: Path) -> None:
    store = _store(tmp_path)
    # A process took the lock and died (as after SIGKILL): the kernel dropped the flock.
    code = (
        "from containerexec.store.tree import RunStore; "
        f"RunStore({str(store.root)!r}).lock({RUN_ID!r}).__enter__()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (store.run_dir(RUN_ID) / "lock").read_text().strip().isdigit()
    assert sources.running(store, RUN_ID) is None
    what, _ = sources.write_export(store, RUN_ID, tmp_path / "out.json")
    assert RUN_ID in what


def test_a_held_run_is_refused_with_its_holder_and_wait_returns_when_released(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    lock = store.lock(RUN_ID).__enter__()
    try:
        with pytest.raises(liveness.StillRunning) as info:
            sources.write_export(store, RUN_ID, tmp_path / "out.json")
        assert str(info.value) == (
            f"run '{RUN_ID}' is still running (pid {os.getpid()} on {socket.gethostname()}); "
            "wait for it, or pass --wait"
        )
        assert info.value.exit_code == 2 and not (tmp_path / "out.json").exists()
        naps: list[float] = []

        def nap(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) == 12:
                lock.__exit__(None, None, None)

        polls = liveness.wait_until_ended(store, RUN_ID, None, sleep=nap)
    finally:
        lock.__exit__(None, None, None)
    assert polls == 12 and max(naps) == liveness.MAX_POLL_S and naps[0] == liveness.FIRST_POLL_S
