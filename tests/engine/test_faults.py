"""Faults during a run: the engine restarting, a full disk, a shard flooding its log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = Path("/run/containerexec-dockerd.pid")


def _cx() -> list[str]:
    return [str(Path(sys.executable).with_name("containerexec"))]


def _running(run_id_prefix: str) -> int:
    client = docker.from_env()
    try:
        return len(
            client.containers.list(
                filters={"label": "containerexec.module=" + run_id_prefix, "status": "running"}
            )
        )
    finally:
        client.close()


def _our_dockerd() -> int | None:
    """The PID of a dockerd that scripts/ensure-engine.sh started, else None."""
    try:
        pid = int(MARKER.read_text().strip())
        os.kill(pid, 0)
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd" else None
    except (OSError, ValueError):
        return None


def _wait(predicate, limit_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _spec(tmp_path: Path, name: str, command: list[str], extra: str = "") -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        "environment: {image: 'containerexec/base:bookworm'}\n"
        "outputs: {out: {type: directory}}\n"
        f"command: {json.dumps(command)}\n" + extra
    )
    return spec


def test_engine_restart_mid_run_reruns_lost_shards_without_using_retries(tmp_path: Path) -> None:
    pid = _our_dockerd()
    if pid is None:
        pytest.skip("the engine was not started by scripts/ensure-engine.sh; not restarting it")
    spec = _spec(
        tmp_path,
        "restart",
        [
            "python3",
            "-c",
            "import sys,time; time.sleep(4); "
            "open(sys.argv[1] + '/' + sys.argv[2], 'w').write('ok')",
            "${{outputs.out}}",
            "${{shard.index}}",
        ],
        "array: {range: 3, max_parallel: 2}\n",
    )
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*_cx(), "--runs-dir", str(runs), "run", str(spec), "-o", f"out={tmp_path / 'out'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(lambda: _running("restart") >= 1, 60, "a shard container to run")
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: not Path(f"/proc/{pid}").exists(), 60, "dockerd to stop")
        subprocess.run(
            ["bash", str(ROOT / "scripts/ensure-engine.sh")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "lost the Docker engine" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0", "1", "2"]
    shard_files = list(runs.glob("runs/*/shards/*.json"))
    attempts = [a for f in shard_files for a in json.loads(f.read_text())["attempts"]]
    lost = [a for a in attempts if a["failure"] == "engine_lost"]
    assert lost and all(not a["counted"] for a in lost)
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": "containerexec.module=restart"})
    finally:
        client.close()
    assert left == []  # the containers the restart stopped were removed too


def test_full_disk_fails_the_shard_naming_the_path_and_keeps_finished_outputs(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        # Shard 0 writes 10 KB, shard 1 writes 2 MB: the second cannot be committed.
        spec = _spec(
            tmp_path,
            "fulldisk",
            [
                "python3",
                "-c",
                "import sys; n = 10_000 if sys.argv[2] == '0' else 2_000_000; "
                "open(sys.argv[1] + '/' + sys.argv[2] + '.bin', 'wb').write(b'x' * n)",
                "${{outputs.out}}",
                "${{shard.index}}",
            ],
            "array: {range: 2, max_parallel: 1}\n",
        )
        runs = tmp_path / "runs"
        result = subprocess.run(
            [*_cx(), "--runs-dir", str(runs), "run", str(spec), "-o", f"out={small / 'out'}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        assert "No space left on device" in result.stderr
        assert str(small / "out") in result.stderr
        assert (small / "out" / "0.bin").stat().st_size == 10_000
        assert not (small / "out" / "1.bin").exists()
        records = {p.name: json.loads(p.read_text()) for p in runs.glob("runs/*/shards/*.json")}
        assert records["000000.json"]["state"] == "succeeded"
        assert records["000001.json"]["failure"] == "no_space"
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_shard_printing_a_lot_keeps_the_last_lines_in_a_bounded_log(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        "flood",
        [
            "python3",
            "-c",
            "for i in range(1_000_000): print('line', i)\nprint('THE END')",
        ],
    )
    runs = tmp_path / "runs"
    result = subprocess.run(
        [*_cx(), "--runs-dir", str(runs), "run", str(spec), "--log-limit", "1m"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = next(runs.glob("runs/*/logs/000000.log"))
    assert log.stat().st_size <= 1024 * 1024 + 200
    lines = log.read_text().splitlines()
    assert lines[0].startswith("[containerexec:") and "dropped" in lines[0]
    assert lines[-2:] == ["line 999999", "THE END"]
