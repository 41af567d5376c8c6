"""Faults during a run: the engine restarting, a full disk, a shard flooding its log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import docker
from helpers import BASE_IMAGE, CONTAINEREXEC, labelled_containers, skip_or_fail, wait_for

from containerexec.labels import LABEL_MODULE

ROOT = Path(__file__).resolve().parents[2]
MARKER = Path("/run/containerexec-dockerd.pid")


def module_containers(module: str, *, running: bool = False) -> list[dict[str, Any]]:
    """A fresh client each time: the daemon restarts under these tests."""
    with contextlib.closing(docker.from_env()) as client:
        return labelled_containers(client, LABEL_MODULE, module, running=running)


def _our_dockerd() -> int | None:
    """The PID of a dockerd that scripts/ensure-engine.sh started, else None."""
    try:
        pid = int(MARKER.read_text().strip())
        os.kill(pid, 0)
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd" else None
    except (OSError, ValueError):
        return None


def _spec(tmp_path: Path, name: str, command: list[str], extra: str = "") -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        f"environment: {{image: '{BASE_IMAGE}'}}\n"
        "outputs: {out: {type: directory}}\n"
        f"command: {json.dumps(command)}\n" + extra
    )
    return spec


def test_engine_restart_mid_run_reruns_lost_shards_without_using_retries(tmp_path: Path) -> None:
    pid = _our_dockerd()
    if pid is None:
        skip_or_fail("the engine was not started by scripts/ensure-engine.sh; not restarting it")
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
        [CONTAINEREXEC, "--runs-dir", str(runs), "run", str(spec), "-o", f"out={tmp_path / 'out'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: module_containers("restart", running=True), timeout_s=60, what="a shard")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=60, what="dockerd to stop")
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
    assert module_containers("restart") == []  # the containers the restart stopped were removed


def test_full_disk_fails_the_shard_naming_the_path_and_keeps_finished_outputs(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        skip_or_fail("mounting a small tmpfs needs root")
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
            [
                CONTAINEREXEC,
                "--runs-dir",
                str(runs),
                "run",
                str(spec),
                "-o",
                f"out={small / 'out'}",
            ],
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
        [CONTAINEREXEC, "--runs-dir", str(runs), "run", str(spec), "--log-limit", "1m"],
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
