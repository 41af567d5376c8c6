"""The one host-safety rule (model/hostsafety.py): each kind of mount it refuses, what it
lets through, and its callers that have no engine: the runner's guard, `run -i`, the worker."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine

from containerexec.engine.docker import engine_sockets
from containerexec.errors import UntrustedInput, UsageError
from containerexec.model.bindings import bind
from containerexec.model.hostsafety import (
    VALUE_MOUNT,
    VALUE_TARGET,
    EnginePlaces,
    UnsafeMount,
    check_mount,
    mount_refusal,
)
from containerexec.model.invocation import Invocation, Mount
from containerexec.model.spec import parse_spec
from containerexec.run.executor import Executor
from containerexec.run.logs import LogSink
from containerexec.run.runner import Attempt, Failure, Tracker, run_invocation
from containerexec.store.tree import RunStore

ROOT = Path("/var/lib/docker")
ENGINE = EnginePlaces(data_root=ROOT, sockets=("/var/run/docker.sock", "/run/docker.sock"))


def mount(kind: str, source: str | Path, name: str, **kw: object) -> Mount:
    root = "/inputs" if kind == "input" else "/outputs"
    fields = {"kind": kind, "name": name, "source": str(source), "target": f"{root}/{name}"}
    return Mount.model_validate(fields | {"read_only": kind == "input"} | kw)


def inp(source: str | Path, name: str = "data", **kw: object) -> Mount:
    return mount("input", source, name, **kw)


def out(source: str | Path, name: str = "out", **kw: object) -> Mount:
    return mount("output", source, name, **kw)


def refusal(m: Mount, under: list[Path] | None = None) -> str:
    refused = mount_refusal(m, engine_places=ENGINE, outputs_under=under)
    assert refused is not None, m
    return refused


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        yield path


def test_a_plain_folder_input_and_an_output_in_the_staging_pass(tmp_path: Path) -> None:
    data, staging = tmp_path / "data", tmp_path / "staging"
    data.mkdir()
    assert mount_refusal(inp(data), engine_places=ENGINE) is None
    assert (
        mount_refusal(inp(data / "a.txt", target="/inputs/data/a.txt"), engine_places=ENGINE)
        is None
    )
    assert (
        mount_refusal(out(staging / "out"), engine_places=ENGINE, outputs_under=[staging]) is None
    )
    value = out(staging / VALUE_MOUNT, name=VALUE_MOUNT, target=VALUE_TARGET)
    assert mount_refusal(value, engine_places=ENGINE, outputs_under=[staging]) is None


def test_any_socket_is_refused(listening: Path) -> None:
    assert f"'{listening}' is a socket" in refusal(inp(listening))


def test_a_hard_link_to_the_engine_socket_is_the_engine_socket(
    tmp_path: Path, listening: Path
) -> None:
    # The engine says where it listens: DockerEngine from DOCKER_HOST (engine_sockets).
    engine = EnginePlaces(data_root=ROOT, sockets=engine_sockets(f"unix://{listening}"))
    link = tmp_path / "innocent.txt"
    os.link(listening, link)
    refused = mount_refusal(inp(link), engine_places=engine)
    assert refused is not None and "the engine's socket" in refused


def test_the_engine_socket_is_refused_by_its_name_even_where_it_is_absent() -> None:
    """A record from elsewhere names it; whether it exists here does not matter."""
    assert "engine's socket" in refusal(inp("/var/run/docker.sock"))


@pytest.mark.parametrize("path", ["/", "/proc", "/proc/1/root", "/sys/fs", "/dev", "/run/x"])
def test_the_hosts_own_folders_are_refused(path: str) -> None:
    assert "hand the host to the container" in refusal(inp(path))


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "is a FIFO" in refusal(inp(fifo))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_outside_dev_is_refused(tmp_path: Path) -> None:
    dev = tmp_path / "null"
    os.mknod(dev, 0o600 | 0o020000, os.makedev(1, 3))  # S_IFCHR: /dev/null's numbers
    assert "is a device node" in refusal(inp(dev))


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/var/lib/docker", "is the engine's data folder"),
        ("/var/lib/docker/volumes/x/_data", "is inside the engine's data folder"),
        ("/var/lib", "is the engine's data folder"),  # it holds it
        ("/var", "is the engine's data folder"),
    ],
)
def test_the_engines_data_folder_is_refused_inside_and_above(path: str, what: str) -> None:
    assert what in refusal(inp(path))


def test_a_writable_input_is_refused(tmp_path: Path) -> None:
    assert "read-only" in refusal(inp(tmp_path, read_only=False))


def test_an_output_outside_the_runs_own_place_is_refused(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    line = refusal(out(tmp_path / "elsewhere"), [staging])
    assert "this run's own folder" in line and str(staging) in line
    # Through a link out of the staging folder, too.
    staging.mkdir()
    (staging / "link").symlink_to(tmp_path / "elsewhere")
    assert "this run's own folder" in refusal(out(staging / "link"), [staging])


@pytest.mark.parametrize(
    ("mount", "why"),
    [
        (inp("/data", target="/outputs/data"), "an input goes at /inputs/data"),
        (inp("/data", target="/inputs/other"), "an input goes at /inputs/data"),
        (inp("/data", target="/inputs/data/../../etc"), "not a plain absolute path"),
        (inp("/data", target="/bin"), "an input goes at /inputs/data"),
        (out("/s/out", target="/outputs/other"), "an output goes at /outputs/out"),
        (out("/s/x", name=VALUE_MOUNT, target="/etc"), "goes at /outputs/.containerexec"),
        (inp("/s/x", name=VALUE_MOUNT, target=VALUE_TARGET), "goes at /outputs/.containerexec"),
    ],
)
def test_a_target_that_is_not_its_ports_place_is_refused(mount: Mount, why: str) -> None:
    assert why in refusal(mount)


def test_check_mount_raises_one_line_exit_2_naming_the_mount(listening: Path) -> None:
    with pytest.raises(UnsafeMount) as info:
        check_mount(inp(listening), where="shard 0 of run 'r'", engine_places=ENGINE)
    text = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in text
    assert text.startswith("shard 0 of run 'r': input mount 'data'") and "socket" in text


SPEC = """\
name: reader
environment: {image: containerexec/base:bookworm}
inputs: {d: {type: directory}}
outputs: {out: {type: directory}}
command: [ls, "${{inputs.d}}"]
"""


def test_run_inputs_inside_the_engines_data_folder_are_refused(tmp_path: Path) -> None:
    spec = parse_spec(SPEC, "reader.yaml")
    root = tmp_path / "engine-data"
    (root / "volumes").mkdir(parents=True)
    with pytest.raises(UsageError, match="input 'd': .* the engine's data folder"):
        bind(
            spec,
            {"d": str(root / "volumes")},
            {"out": "o"},
            engine_places=EnginePlaces(data_root=root),
        )
    engine = FakeEngine()
    engine.root = root
    executor = Executor(engine, RunStore(tmp_path / "runs"), sleep=lambda s: None)
    with pytest.raises(UsageError, match="engine's data folder"):
        executor.start(spec, {"d": str(root)}, {"out": str(tmp_path / "o")})
    assert not RunStore(tmp_path / "runs").ids()
    data = tmp_path / "data"
    data.mkdir()
    run = executor.start(spec, {"d": str(data)}, {"out": str(tmp_path / "o")})
    run.wait()
    with pytest.raises(UsageError, match="engine's data folder"):  # --resume -i d=...
        executor.resume(spec, run.id, inputs={"d": str(root / "volumes")})


def _invocation(*mounts: Mount) -> Invocation:
    return Invocation(
        run_id="r-1",
        module="m",
        image="sha256:" + "a" * 64,
        argv=["true"],
        mounts=list(mounts),
        user="1:1",
        name="cx-r-1-0",
    )


def _attempt(engine: FakeEngine, inv: Invocation, log: Path, **kw: Any) -> Attempt:
    sink = LogSink(log)
    try:
        return run_invocation(
            engine, inv, secrets={}, log=sink, tracker=Tracker(), clock=lambda: 0.0, **kw
        )
    finally:
        sink.finish()


def test_the_runner_creates_no_container_for_a_refused_mount(
    tmp_path: Path, listening: Path
) -> None:
    engine = FakeEngine()
    a = _attempt(engine, _invocation(inp(listening)), tmp_path / "log")
    assert a.failure == Failure.UNSAFE_MOUNT and "socket" in a.message
    assert engine.containers_by_id == {}
    b = _attempt(
        engine,
        _invocation(out(tmp_path / "elsewhere")),
        tmp_path / "log2",
        outputs_under=[tmp_path / "staging"],
    )
    assert b.failure == Failure.UNSAFE_MOUNT and "own folder" in b.message
    assert engine.containers_by_id == {}


def test_a_worker_refuses_a_run_json_edited_to_mount_a_host_folder(tmp_path: Path) -> None:
    """`worker RUN_DIR --shard K` (Slurm) reads run.json, which anyone on the cluster may edit."""
    spec = parse_spec(SPEC, "reader.yaml")
    data = tmp_path / "data"
    data.mkdir()
    engine = FakeEngine()
    store = RunStore(tmp_path / "runs")
    run = Executor(engine, store, sleep=lambda s: None).start(
        spec, {"d": str(data)}, {"out": str(tmp_path / "o")}
    )
    assert run.wait().state == "succeeded"
    path = store.run_dir(run.id) / "run.json"
    record = json.loads(path.read_text())
    record["inputs"]["d"] = "/run"
    path.write_text(json.dumps(record))
    created = len(engine.containers_by_id)
    with pytest.raises(UntrustedInput) as info:
        Executor(engine, store, sleep=lambda s: None).work(run.id, 0)
    assert str(path) in str(info.value) and "input 'd'" in str(info.value)
    assert info.value.exit_code == 2
    assert len(engine.containers_by_id) == created
