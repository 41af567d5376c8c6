"""Issue 22, item 5: packed Python values share one interpreter, and each keeps its own
returned value, exit status, failure kind, retries and log; a crash of the interpreter
fails only the value it was running, and the rest go on in a new one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from helpers import run_containers, wait_for

from containerexec.authoring.targets import load_target
from containerexec.engine.docker import DockerEngine
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

SOURCE = '''
import ctypes
import os
import sys
import time

from containerexec.authoring import ContainerModule, ShardIndex, module

IMPORTS = [os.getpid()]  # once per interpreter


@module(
    image="containerexec/base:bookworm",
    array={"range": 12, "batch_size": 12, "max_parallel": 1},
    resources={"memory": "64m", "timeout": "3s"},
    retries={"max_attempts": 2, "on_exit_codes": [3], "backoff": {"initial": 0.1}},
)
def crashy(index: ShardIndex) -> dict:
    print(f"out {index}")
    print(f"err {index}", file=sys.stderr)
    sys.stdout.flush()
    if index == 2:
        os._exit(3)  # retried alone, in its own container
    if index == 4:
        ctypes.string_at(0)  # a segfault
    if index == 6:
        x = bytearray(400 << 20)  # the OOM killer
    if index == 8:
        raise ValueError("no eight")
    if index == 10:
        time.sleep(60)  # past the timeout
    os.chdir("/tmp")
    os.environ["LEAK"] = str(index)
    return {"pid": os.getpid(), "imports": len(IMPORTS), "index": index}


@module(image="containerexec/base:bookworm", array={"range": 4, "batch_size": 4, "max_parallel": 1})
def slow(index: ShardIndex) -> int:
    if index == 1:
        time.sleep(60)
    return index


class Fresh(ContainerModule):
    """Each value gets a new instance, as unpacked."""

    image = "containerexec/base:bookworm"

    def array(self):
        return ["p", "q", "r"]

    def run(self, iteration_value=None, iteration_index=0):
        self.seen = [*getattr(self, "seen", []), iteration_value]
        return {"seen": self.seen, "pid": os.getpid(), "cwd": os.getcwd(),
                "leak": os.environ.get("LEAK")}
'''


def load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "packedmods.py"
    if not path.exists():
        path.write_text(SOURCE)
    return load_target(f"{path}:{name}")


def test_packed_python_values_share_an_interpreter_and_a_crash_fails_only_its_value(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    crashy = load(tmp_path, "crashy")
    options = RunOptions(labels=test_session_label, grace_s=1.0)
    result = crashy.run(runs_dir=tmp_path / "runs", options=options, check=False)
    shards = RunStore(tmp_path / "runs").load_shards(result.record.run_id)
    failed = {2: "exit_code", 4: "signal", 6: "oom", 8: "exit_code", 10: "timeout"}
    assert {i: r.failure for i, r in shards.items() if r.state == "failed"} == failed, {
        i: (r.state, r.exit_code, r.failure, r.attempts[-1].message) for i, r in shards.items()
    }
    assert [shards[i].exit_code for i in (2, 4, 6, 8)] == [3, 139, 137, 1]
    # Every value that succeeded came back, as unpacked (0 of 7 before issue 22).
    ok = [i for i in range(12) if i not in failed]
    values = result.values
    assert [values[i]["index"] for i in ok] == ok
    assert all(values[i] is None for i in failed)
    # One interpreter for the values between crashes: imported once in each.
    pids = [values[i]["pid"] for i in ok]
    assert pids[0] == pids[1] and len(set(pids)) == 5  # 0,1 | 3 | 5 | 7,9 | 11
    assert values[9]["pid"] == values[7]["pid"]  # an exception does not end it
    assert all(values[i]["imports"] == 1 for i in ok)
    # One container for the batch; only value 2 (exit 3) was retried, alone in its own.
    first = {r.attempts[0].container_id for r in shards.values()}
    assert len(first) == 1
    assert [len(shards[i].attempts) for i in range(12)] == [1, 1, 2, *[1] * 9]
    assert shards[2].attempts[1].container_id not in first
    # Each value's own log: what it printed, and the traceback of the one that raised.
    for i in range(12):
        log = Path(shards[i].log_path).read_text()
        assert f"err {i}\n" in log and f"err {i - 1}\n" not in log, (i, log)
    assert "ValueError: no eight" in Path(shards[8].log_path).read_text()
    assert shards[6].oom_killed and "timed out after 3 s" in (shards[10].message or "")


def test_packed_class_values_each_get_a_new_instance_environment_and_cwd(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    module = load(tmp_path, "Fresh")(None).as_module()
    array = module.spec.array.model_copy(update={"batch_size": 3})  # as --batch-size 3
    spec = module.spec.model_copy(update={"array": array})
    engine = DockerEngine.from_env()
    try:
        executor = Executor(engine, RunStore(tmp_path / "runs"))
        run = executor.start(spec, {}, {}, options=RunOptions(labels=test_session_label))
        values = run.wait().values
    finally:
        engine.api.close()
    assert [v["seen"] for v in values] == [["p"], ["q"], ["r"]]
    assert len({v["pid"] for v in values}) == 1  # one interpreter
    assert all(v["cwd"] == "/" and v["leak"] is None for v in values)


def test_a_stop_during_a_python_batch_keeps_the_values_done_and_leaves_no_container(
    tmp_path: Path, test_session_label: dict[str, str], docker_client: Any
) -> None:
    spec = load(tmp_path, "slow").spec
    engine = DockerEngine.from_env()
    store = RunStore(tmp_path / "runs")
    try:
        executor = Executor(engine, store)
        options = RunOptions(labels=test_session_label, grace_s=1.0)
        run = executor.start(spec, {}, {}, options=options)
        wait_for(lambda: store.shard_path(run.id, 0).is_file(), what="value 0's record")
        time.sleep(0.5)  # value 1 is sleeping now
        t0 = time.monotonic()
        executor.cancel()
        result = run.wait()
    finally:
        engine.api.close()
    assert time.monotonic() - t0 < 20  # the driver passed the stop on to the interpreter
    shards = store.load_shards(result.record.run_id)
    assert sorted(shards) == [0, 1]  # 2 and 3 never started: no record
    assert [shards[0].state, shards[1].state] == ["succeeded", "cancelled"]
    assert shards[0].returned == 0
    assert run_containers(docker_client, result.record.run_id) == []
