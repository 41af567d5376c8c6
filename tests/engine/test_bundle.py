"""Bundles on the real engine: a run of a local build (never pushed) exported with its image
and inputs, replayed "on a colleague's machine" (the image removed from the engine, the
data moved away, another runs dir); verdicts that name the failure kind; --print scripts."""

from __future__ import annotations

import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import BASE_IMAGE, direct_ulimits, local_engine, wait_for
from registry import free_port

from containerexec.cli import App, cli
from containerexec.engine.docker import DockerEngine
from containerexec.model.spec import load_spec
from containerexec.repro import replay
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

SECRET = "s3cret-" + uuid.uuid4().hex
JOB = """\
import os, sys
value, data, out = sys.argv[1:4]
text = open(os.path.join(data, value + ".txt")).read()
print(f"shard {value}: {len(text)} bytes, token {len(os.environ['CX_TOKEN'])} chars", flush=True)
if "bad" in text:
    print(f"fatal: record 17 of {value}.txt is bad", file=sys.stderr, flush=True)
    sys.exit(3)
open(os.path.join(out, value + ".out"), "w").write(text.upper())
"""
SPEC = """\
name: cx-bundle-job
environment: {{image: "{image}"}}
secrets: [CX_TOKEN]
inputs: {{data: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [python3, /app/job.py, "${{{{shard.value}}}}", "${{{{inputs.data}}}}",
          "${{{{outputs.out}}}}"]
array: {{values: [a, b, c], max_parallel: 3}}
"""


def cx(runs: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--runs-dir", str(runs), *args], obj=App(runs_dir=runs, sleep=lambda s: None)
    )


@dataclass(frozen=True)
class Failed:
    tmp: Path
    data: Path
    store: RunStore
    run_id: str
    image_id: str


@pytest.fixture(scope="module")
def failed(test_session_label: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Failed:
    with local_engine() as engine:
        return _failed_run(engine, test_session_label, tmp_path_factory)


def _failed_run(
    engine: DockerEngine,
    test_session_label: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Failed:
    tmp = tmp_path_factory.mktemp("bundle")
    ctx = tmp / "image"
    ctx.mkdir()
    (ctx / "job.py").write_text(JOB)
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY job.py /app/job.py\n")
    tag = f"cx-bundle-job:{uuid.uuid4().hex[:10]}"
    image = engine.build(
        str(ctx),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={},
        target=None,
        labels=test_session_label,
    )
    data = tmp / "data"
    data.mkdir()
    for name, text in {"a": "fine\n", "b": "a bad record\n", "c": "also fine\n"}.items():
        (data / f"{name}.txt").write_text(text)
    spec_path = tmp / "job.yaml"
    spec_path.write_text(SPEC.format(image=tag))
    store = RunStore(tmp / "build-machine")
    result = (
        Executor(engine, store, secrets={"CX_TOKEN": SECRET})
        .start(
            load_spec(spec_path),
            {"data": str(data)},
            {},
            spec_path=spec_path,
            options=RunOptions(labels=test_session_label),
        )
        .wait()
    )
    assert [s.index for s in result.failed] == [1], result
    return Failed(tmp, data, store, result.record.run_id, image.id)


def test_a_local_build_replays_elsewhere_from_a_bundle_with_its_image_and_inputs(
    engine: DockerEngine, failed: Failed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "failed.tar"
    began = time.monotonic()
    made = cx(
        failed.store.root,
        "runs",
        "export",
        failed.run_id,
        "--bundle",
        str(bundle),
        "--with-image",
        "--with-inputs",
    )
    took = time.monotonic() - began
    assert made.exit_code == 0, made.output
    assert "input data" in made.stderr and "image sha256:" in made.stderr
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert "inputs/data/b.txt" in names and any(n.startswith("images/") for n in names)
    assert SECRET.encode() not in bundle.read_bytes()  # nor in the image, inputs or logs
    print(f"bundle with image+inputs: {bundle.stat().st_size} bytes in {took:.1f} s")

    # The colleague's machine: no copy of the image, the data not at its recorded place.
    engine.remove_image(failed.image_id)
    assert engine.inspect_image(failed.image_id) is None
    moved = failed.tmp / "data-moved"
    failed.data.rename(moved)
    monkeypatch.setenv("CX_TOKEN", "another-token")
    here = tmp_path / "laptop"
    try:
        result = cx(here, "repro", str(bundle))
    finally:
        moved.rename(failed.data)

    assert result.exit_code == 3, result.output
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    assert "from the bundle, ID verified" in result.stderr
    # bundles/<run id>-<what the inputs hold>/: another bundle of the run gets its own.
    (unpacked,) = (here / "bundles").glob(f"{failed.run_id}-*/inputs")
    assert f"inputs data from the bundle, unpacked into {unpacked}" in result.stderr
    loaded = engine.inspect_image(failed.image_id)
    assert loaded is not None and loaded.id == failed.image_id
    replayed = RunStore(here).load_run("last")
    assert replayed.inputs["data"] == str(unpacked / "data")


LIMITED = """\
name: cx-limited
environment: {{image: "{image}", pull: never}}
command: [python3, -c, "{code}"]
resources: {{memory: 64m, timeout: {timeout}}}
retries: {{max_attempts: 1}}
"""
HOG = (
    "import sys; print('allocating', file=sys.stderr, flush=True); "
    "x = bytearray(512 << 20); x[::4096] = b'x' * len(x[::4096])"
)
SLEEPER = "import time, sys; print('waiting', file=sys.stderr, flush=True); time.sleep(60)"


def limited_run(
    engine: DockerEngine, labels: dict[str, str], tmp: Path, code: str, timeout: str
) -> RunStore:
    spec_path = tmp / "limited.yaml"
    spec_path.write_text(LIMITED.format(image=BASE_IMAGE, code=code, timeout=timeout))
    store = RunStore(tmp / "runs")
    Executor(engine, store).start(
        load_spec(spec_path), {}, {}, spec_path=spec_path, options=RunOptions(labels=labels)
    ).wait()
    return store


@pytest.mark.podman  # CI: on Podman too
def test_an_oom_replays_as_an_oom_at_the_recorded_limit(
    engine: DockerEngine, test_session_label: dict[str, str], tmp_path: Path
) -> None:
    store = limited_run(engine, test_session_label, tmp_path, HOG, "2m")
    [shard] = store.load_shards(store.load_run("last").run_id).values()
    assert shard.failure == "oom", shard
    result = cx(store.root, "repro", "last")
    assert result.exit_code == 137, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        "reproduced: OOM-killed at the recorded 64 MiB limit (exit 137)"
    )


def test_a_timeout_replays_as_a_timeout_and_its_print_script_keeps_the_limit(
    engine: DockerEngine,
    test_session_label: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = limited_run(engine, test_session_label, tmp_path, SLEEPER, "2s")
    [shard] = store.load_shards(store.load_run("last").run_id).values()
    assert shard.failure == "timeout", shard
    result = cx(store.root, "repro", "last")
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("reproduced: timed out at the recorded 2 s limit (exit ")
    ), result.output

    monkeypatch.chdir(tmp_path)
    printed = cx(store.root, "repro", "last", "--print")
    assert printed.exit_code == 0, printed.output
    script = tmp_path / "repro.sh"
    script.write_text(printed.stdout)
    began = time.monotonic()
    ran = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 124, (ran.returncode, ran.stderr)
    assert time.monotonic() - began < 30
    assert "timed out after the recorded 2 s" in ran.stderr


@pytest.mark.parametrize(
    ("command", "answers"),
    [
        (["sleep", "30"], False),  # docker's proxy accepts, then closes: nobody behind it
        (
            [
                "python3",
                "-c",
                "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 5678)); "
                "s.listen(); print('listening', flush=True); c, _ = s.accept(); time.sleep(30)",
            ],
            True,
        ),
    ],
)
def test_the_debug_port_check_tells_a_listener_from_dockers_proxy(
    docker_client: Any, test_session_label: dict[str, str], command: list[str], answers: bool
) -> None:
    port = free_port()
    container = docker_client.containers.run(
        BASE_IMAGE,
        command,
        detach=True,
        ports={"5678/tcp": ("127.0.0.1", port)},
        labels=test_session_label,
        auto_remove=False,
        ulimits=direct_ulimits(),
    )
    try:
        if answers:
            wait_for(lambda: b"listening" in container.logs(), what="the listener")
        held = replay.debugger_connection(port, timeout_s=3)
        assert (held is not None) is answers
        if held is not None:
            held.close()
    finally:
        container.remove(force=True)
