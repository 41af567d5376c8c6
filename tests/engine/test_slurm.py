"""Runs on a real (one-node) Slurm cluster: the array and its throttle, failures replayed
here, Ctrl-C, resume, a pipeline, the refusal of an image the nodes cannot pull, packed
arrays (one task per batch), and Slurm's own faults: a time limit, a failed node, a resume
while the run's job still runs."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, TEST_ENGINE, local_engine, outputs_of, run_containers, wait_for
from registry import Registry
from slurm import SlurmCluster
from workspace import Workspace, workspace_fixture  # noqa: F401

ARRAY = """\
environment: {env}
name: slurmy
inputs:
  fail_on: {{type: string, default: none}}
  pause: {{type: number, default: 0}}
outputs:
  out: {{type: directory}}
array: {{range: {n}, max_parallel: {k}}}
command: [sh, -c, 'sleep "$3"; if [ "$1" = "$2" ]; then echo "broke on $1" >&2; exit 7; fi;
          echo "done $1" > "$0/$1.txt"', "${{{{outputs.out}}}}", "${{{{shard.index}}}}",
          "${{{{inputs.fail_on}}}}", "${{{{inputs.pause}}}}"]
"""


@pytest.fixture(scope="session")
def pushed_base(registry: Registry, docker_available: None) -> str:
    """The base image pushed to the test registry: repo@sha256:..., pullable by every node."""
    repo = f"{registry.address}/cx/base"
    with local_engine() as engine:  # the engine under test, Docker or Podman
        engine.tag(BASE_IMAGE, repo, "slurm")
        return f"{repo}@{engine.push(repo, 'slurm')}"


@pytest.fixture
def ws(workspace: Workspace, slurm: SlurmCluster) -> Iterator[Workspace]:
    yield workspace


def array(ws: Workspace, image: str | None, n: int = 3, k: int = 3, env: str = "") -> Path:
    return ws.spec(ARRAY.format(env=env or f"{{image: '{image}'}}", n=n, k=k))


def squeue_active(job: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", job, "-o", "%K|%T"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_a_12_shard_array_never_runs_more_than_its_throttle(
    ws: Workspace, pushed_base: str, docker_client: Any
) -> None:
    spec = array(ws, pushed_base, n=12, k=3)
    out = ws.root / "out"
    proc = ws.start("run", str(spec), "--on", "slurm", "-o", f"out={out}", "-i", "pause=1")
    run_id = ws.run_id()
    peak = 0
    while proc.poll() is None:  # sample `docker ps` by the run's label, as test_arrays does
        peak = max(peak, len(run_containers(docker_client, run_id, running=True)))
        time.sleep(0.05)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert 2 <= peak <= 3, peak
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(12)}
    rec = ws.record(run_id)
    assert rec.scheduler is not None and rec.scheduler.kind == "slurm"
    assert len(rec.scheduler.job_ids) == 1 and rec.state == "succeeded"
    script = ws.store.run_dir(run_id) / "slurm" / "job-0.sh"
    assert "#SBATCH --array=0-11%3" in script.read_text()
    shown = ws.cli("runs", "show", run_id)
    assert f"slurm:    job {rec.scheduler.job_ids[0]}" in shown.stdout
    listed = ws.cli("runs", "list")
    assert rec.scheduler.job_ids[0] in listed.stdout


def test_a_failed_shard_exits_1_replays_here_and_resume_submits_only_it(
    ws: Workspace, pushed_base: str
) -> None:
    spec = array(ws, pushed_base)
    out = ws.root / "out"
    first = ws.cli("run", str(spec), "--on", "slurm", "-o", f"out={out}", "-i", "fail_on=1")
    assert first.returncode == 1, first.stderr
    assert "broke on 1" in first.stderr and "containerexec repro" in first.stderr
    run_id = ws.run_id()
    shards = ws.shards(run_id)
    assert shards[1].state == "failed" and shards[1].exit_code == 7
    assert shards[1].failure == "exit_code"

    # Replayed on this machine with Docker only: no Slurm involved.
    repro = ws.cli("repro", run_id, "--shard", "1", env={"SLURM_CONF": "/nonexistent"})
    assert repro.returncode == 7, repro.stderr
    assert "reproduced: exit 7, same as recorded" in repro.stdout

    again = ws.cli("run", str(spec), "--on", "slurm", "--resume", run_id, "-i", "fail_on=none")
    assert again.returncode == 0, again.stderr
    rec = ws.record(run_id)
    assert rec.state == "succeeded" and rec.scheduler is not None
    assert rec.scheduler.kind == "slurm" and len(rec.scheduler.job_ids) == 2
    second = ws.store.run_dir(run_id) / "slurm" / "job-1.sh"
    assert "#SBATCH --array=1%1" in second.read_text()
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(3)}
    assert len(ws.shards(run_id)[1].attempts) == 2 and len(ws.shards(run_id)[0].attempts) == 1


def test_fail_fast_on_one_task_cancels_the_rest_of_the_job(ws: Workspace, pushed_base: str) -> None:
    body = ARRAY.format(env=f"{{image: '{pushed_base}'}}", n=6, k=1)
    spec = ws.spec(body + "retries: {fail_run_on_exit_codes: [7]}\n")
    ran = ws.cli("run", str(spec), "--on", "slurm", "-i", "fail_on=0", "-i", "pause=1")
    assert ran.returncode == 1, ran.stderr
    rec = ws.record()
    assert rec.state == "failed" and (rec.reason or "").startswith("fail_fast: shard 0"), rec
    shards = ws.shards()
    assert shards[0].exit_code == 7
    assert sum(1 for r in shards.values() if r.state == "succeeded") <= 1  # one at a time


def test_ctrl_c_cancels_the_slurm_job_and_leaves_no_container(
    ws: Workspace, pushed_base: str, docker_client: Any
) -> None:
    spec = array(ws, pushed_base, n=4, k=2)
    proc = ws.start("run", str(spec), "--on", "slurm", "--grace", "1", "-i", "pause=120")
    run_id = ws.run_id()
    wait_for(
        lambda: len(run_containers(docker_client, run_id, running=True)) == 2,
        timeout_s=60,
        what="2 shards running on Slurm",
    )
    job = ws.record(run_id).scheduler.job_ids[0]  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert run_containers(docker_client, run_id) == []
    assert squeue_active(job) == []
    rec = ws.record(run_id)
    assert rec.state == "cancelled"
    assert {s.state for s in ws.shards(run_id).values()} == {"cancelled"}


def test_a_never_pushed_local_image_is_refused_before_submission(
    ws: Workspace, registry: Registry, test_session_label: dict[str, str]
) -> None:
    (label,) = test_session_label.items()  # the session removes the image it builds
    ws.folder("img", {"Dockerfile": f"FROM {BASE_IMAGE}\nLABEL {label[0]}={label[1]}\n"})
    spec = array(ws, None, env="{build: {context: img}}")
    refused = ws.cli("run", str(spec), "--on", "slurm")
    assert refused.returncode == 1, refused.stderr
    assert "never pushed" in refused.stderr and "--push-to" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not any((ws.store.run_dir(i) / "slurm").exists() for i in ws.store.ids())

    pushed = ws.cli(
        "run", str(spec), "--on", "slurm", "--push-to", f"{registry.address}/cx/pushed:run"
    )
    assert pushed.returncode == 0, pushed.stderr
    rec = ws.record()
    assert rec.image.pinned.startswith(f"{registry.address}/cx/pushed@sha256:")
    assert rec.image.digest == rec.image.pinned
    # What the 40 s of push and submit say, and the job id as soon as sbatch returns it.
    assert f" to {registry.address}/cx/pushed:run ..." in pushed.stderr
    assert rec.scheduler is not None
    job = rec.scheduler.job_ids[0]
    said = re.search(
        rf"submitted Slurm job {job} \(array [0-9,%-]+\) for run {rec.run_id}", pushed.stderr
    )
    assert said is not None, pushed.stderr


PIPELINE = """\
name: chain
inputs: {seed: {type: file}}
outputs: {result: "${{jobs.c.outputs.out}}"}
jobs:
  a: {module: emit.yaml, inputs: {src: "${{inputs.seed}}", tag: A}}
  b: {module: emit.yaml, inputs: {src: "${{jobs.a.outputs.out}}", tag: B}}
  c: {module: emit.yaml, inputs: {src: "${{jobs.b.outputs.out}}", tag: C}}
"""
EMIT = """\
name: emit
environment: {{image: '{image}'}}
inputs: {{src: {{type: file}}, tag: {{type: string}}}}
outputs: {{out: {{type: file, path: out.txt}}}}
command: [sh, -c, 'cat "$0" > "$1"; printf %s "$2" >> "$1"',
          "${{{{inputs.src}}}}", "${{{{outputs.out}}}}", "${{{{inputs.tag}}}}"]
"""


def test_a_3_job_pipeline_runs_in_dependency_order_on_slurm(
    ws: Workspace, pushed_base: str
) -> None:
    (ws.root / "emit.yaml").write_text(EMIT.format(image=pushed_base))
    (ws.root / "chain.yaml").write_text(PIPELINE)
    (ws.root / "seed.txt").write_text("seed")

    def chain(result: str) -> None:
        seed, out = f"seed={ws.root / 'seed.txt'}", f"result={ws.root / result}"
        ran = ws.cli(
            "pipeline", "run", "chain.yaml", "--on", "slurm", "-i", seed, "-o", out, timeout_s=300
        )
        assert ran.returncode == 0, ran.stderr

    chain("result.txt")
    assert (ws.root / "result.txt").read_text() == "seedABC"
    runs = {ws.record(i).module + i[-1]: ws.record(i) for i in ws.store.ids()}
    jobs = sorted(runs.values(), key=lambda r: r.started_at)
    assert [r.run_id[-1] for r in jobs] == ["a", "b", "c"]
    assert all(r.scheduler is not None and len(r.scheduler.job_ids) == 1 for r in jobs)
    ends = [r.ended_at or 0 for r in jobs]
    assert jobs[1].started_at >= ends[0] and jobs[2].started_at >= ends[1]

    # Again, nothing changed: the nodes saved what they made, so no job submits anything.
    chain("again.txt")
    assert (ws.root / "again.txt").read_text() == "seedABC"
    second = [
        ws.record(i) for i in ws.store.ids() if ws.record(i).run_id not in {r.run_id for r in jobs}
    ]
    assert len(second) == 3
    assert all(r.scheduler is not None and r.scheduler.job_ids == [] for r in second)
    assert all(s.cached for r in second for s in ws.shards(r.run_id).values())


def detached_pair(ws: Workspace, spec: Path, docker_client: Any) -> str:
    """Submit 2 shards of 120 s with --detach; returns the run id once both run."""
    detached = ws.cli("run", str(spec), "--on", "slurm", "--detach", "-i", "pause=120")
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    wait_for(
        lambda: len(run_containers(docker_client, run_id, running=True)) == 2,
        timeout_s=60,
        what="2 detached shards running",
    )
    return run_id


def test_runs_cancel_stops_a_detached_run(
    ws: Workspace, pushed_base: str, docker_client: Any
) -> None:
    run_id = detached_pair(ws, array(ws, pushed_base, n=2, k=2), docker_client)
    assert "running (Slurm job" in ws.cli("runs", "show", run_id).stdout
    cancel = ws.cli("runs", "cancel", run_id, timeout_s=180)
    assert cancel.returncode == 0, cancel.stderr
    assert run_containers(docker_client, run_id) == []
    rec = ws.record(run_id)
    assert rec.state == "cancelled" and rec.counts == {"cancelled": 2}


PACKED = """\
environment: {{image: '{image}'}}
name: packy
inputs:
  fail_on: {{type: string, default: none}}
  slow_on: {{type: string, default: none}}
outputs:
  out: {{type: directory}}
array: {{range: {n}, max_parallel: 2}}
command: [sh, -c, 'if [ "$1" = "$3" ]; then sleep 300; fi;
          case " $2 " in *" $1 "*) echo "broke on $1" >&2; exit 7;; esac;
          echo "done $1"; echo "done $1" > "$0/$1.txt"',
          "${{{{outputs.out}}}}", "${{{{shard.index}}}}", "${{{{inputs.fail_on}}}}",
          "${{{{inputs.slow_on}}}}"]
"""


def test_a_packed_array_runs_one_batch_per_task_and_resume_reruns_only_failed_values(
    ws: Workspace, pushed_base: str
) -> None:
    spec = ws.spec(PACKED.format(image=pushed_base, n=10))
    out = ws.root / "out"
    packed = ("run", str(spec), "--on", "slurm", "--batch-size", "4")
    first = ws.cli(*packed, "-o", f"out={out}", "-i", "fail_on=5 8")
    assert first.returncode == 1, first.stderr
    assert "packing: up to 4 shards per container" in first.stderr
    assert "broke on 5" in first.stderr
    run_id = ws.run_id()
    assert f"{spec} --on slurm --batch-size 4 --resume {run_id}" in first.stderr
    slurm_dir = ws.store.run_dir(run_id) / "slurm"
    script = (slurm_dir / "job-0.sh").read_text()
    assert "#SBATCH --array=0-2%2" in script and '--batch "$SLURM_ARRAY_TASK_ID"' in script
    plan = json.loads((slurm_dir / "batches-0.json").read_text())
    assert plan == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shards = ws.shards(run_id)
    failed = {5, 8}
    assert {i: r.state for i, r in shards.items()} == {
        i: "failed" if i in failed else "succeeded" for i in range(10)
    }
    assert shards[5].exit_code == 7 and shards[5].failure == "exit_code"
    # One container per batch, and each value keeps its own log and outputs.
    containers = [shards[i].attempts[0].container_id for i in range(10)]
    assert len(set(containers)) == 3
    assert containers[0] == containers[3] != containers[4] == containers[7] != containers[8]
    assert "done 9" in Path(shards[9].log_path).read_text()
    assert "broke on 5" in Path(shards[5].log_path).read_text()
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(10) if i not in failed}

    # One value replayed here, in its own container, with Docker only.
    repro = ws.cli("repro", run_id, "--shard", "5", env={"SLURM_CONF": "/nonexistent"})
    assert repro.returncode == 7, repro.stderr

    again = ws.cli(*packed, "--resume", run_id, "-i", "fail_on=none")
    assert again.returncode == 0, again.stderr
    assert json.loads((slurm_dir / "batches-1.json").read_text()) == [[5, 8]]
    after = ws.shards(run_id)
    assert all(after[i].attempts == shards[i].attempts for i in range(10) if i not in failed)
    assert [len(after[i].attempts) for i in sorted(failed)] == [2, 2]
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(10)}
    assert ws.record(run_id).state == "succeeded"


def test_a_packed_task_at_its_time_limit_charges_the_running_value_and_resubmits_the_rest(
    ws: Workspace, pushed_base: str
) -> None:
    spec = ws.spec(PACKED.format(image=pushed_base, n=4))
    out = ws.root / "out"
    ran = ws.cli(
        "run", str(spec), "--on", "slurm", "--batch-size", "4", "--time", "0:30",
        "--grace", "1", "-o", f"out={out}", "-i", "slow_on=1", timeout_s=300,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    run_id = ws.run_id()
    shards = ws.shards(run_id)
    assert [shards[i].state for i in range(4)] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert shards[1].failure == "timeout", shards[1].attempts
    assert len(shards[1].attempts) == 1 and shards[1].attempts[0].counted
    assert "time limit" in (shards[1].attempts[-1].message or "")
    # 2 and 3 never started in the task Slurm ended: submitted again, one attempt each.
    rec = ws.record(run_id)
    assert rec.scheduler is not None and len(rec.scheduler.job_ids) == 2
    slurm_dir = ws.store.run_dir(run_id) / "slurm"
    assert json.loads((slurm_dir / "batches-1.json").read_text()) == [[2, 3]]
    assert [len(shards[i].attempts) for i in (2, 3)] == [1, 1]
    assert shards[2].attempts[0].container_id != shards[0].attempts[0].container_id
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in (0, 2, 3)}


BIG = """\
environment: {{image: '{image}'}}
name: big
outputs:
  out: {{type: directory}}
secrets: [BREAK_ON]
array: {{range: 1200, batch_size: auto, max_parallel: 3}}
command: [sh, -c, 'if [ "$1" = "$BREAK_ON" ]; then echo "broke on $1" >&2; exit 7; fi;
          echo "done $1" > "$0/$1.txt"', "${{{{outputs.out}}}}", "${{{{shard.index}}}}"]
"""


def test_resuming_a_packed_value_past_max_array_size_works_with_the_printed_command(
    ws: Workspace, pushed_base: str
) -> None:
    # The test cluster keeps MaxArraySize=1001: shard 1100's own task index would be
    # refused by sbatch; the resume renumbers it as task 0 of a listed array.
    spec = ws.spec(BIG.format(image=pushed_base))
    out = ws.root / "out"
    first = ws.cli(
        "run", str(spec), "--on", "slurm", "-o", f"out={out}", timeout_s=300,
        env={"BREAK_ON": "1100"},
    )  # fmt: skip
    assert first.returncode == 1, first.stderr
    assert "packing: up to 200 shards per container" in first.stderr
    printed = next(
        line.split(": ", 1)[1]
        for line in first.stderr.splitlines()
        if line.startswith("resume (reruns the shards that did not succeed): ")
    )
    argv = shlex.split(printed)
    assert argv[:2] == ["containerexec", "run"] and "--resume" in argv, printed
    resumed = ws.cli(*argv[1:], timeout_s=300, env={"BREAK_ON": "none"})
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert len(outputs_of(out)) == 1200
    run_id = ws.run_id()
    slurm_dir = ws.store.run_dir(run_id) / "slurm"
    jobs = sorted(slurm_dir.glob("batches-*.json"))
    assert json.loads(jobs[-1].read_text()) == [[1100]]
    assert "--array=0%" in (slurm_dir / f"job-{len(jobs) - 1}.sh").read_text()


def slurm_cmd(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


def test_resume_while_the_runs_job_still_runs_is_refused_and_the_job_left_alone(
    ws: Workspace, pushed_base: str, docker_client: Any
) -> None:
    spec = array(ws, pushed_base, n=2, k=2)
    run_id = detached_pair(ws, spec, docker_client)
    job = ws.record(run_id).scheduler.job_ids[0]  # type: ignore[union-attr]
    resumed = ws.cli("run", str(spec), "--on", "slurm", "--resume", run_id)
    assert resumed.returncode == 2, resumed.stderr
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    assert f"Slurm job {job} is still RUNNING" in lines[0] and f"scancel {job}" in lines[0]
    # Never killed, never submitted again: the same job, its containers still running.
    assert ws.record(run_id).scheduler.job_ids == [job]  # type: ignore[union-attr]
    assert len(run_containers(docker_client, run_id, running=True)) == 2
    assert len(squeue_active(job)) == 2
    assert not (ws.store.run_dir(run_id) / "slurm" / "job-1.sh").exists()
    cancel = ws.cli("runs", "cancel", run_id, timeout_s=180)
    assert cancel.returncode == 0, cancel.stderr
    assert run_containers(docker_client, run_id) == []


def test_a_task_at_its_slurm_time_limit_is_one_counted_timeout_attempt(
    ws: Workspace, pushed_base: str, docker_client: Any
) -> None:
    spec = array(ws, pushed_base, n=1, k=1)
    ran = ws.cli(
        "run", str(spec), "--on", "slurm", "--time", "0:15", "--grace", "1", "-i", "pause=300",
        timeout_s=300,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    assert "time limit" in ran.stderr and "Traceback" not in ran.stderr
    run_id = ws.run_id()
    shard = ws.shards(run_id)[0]
    assert shard.state == "failed" and shard.failure == "timeout", shard.attempts
    assert [(a.failure, a.counted) for a in shard.attempts] == [("timeout", True)]
    assert len(ws.record(run_id).scheduler.job_ids) == 1  # type: ignore[union-attr]
    assert run_containers(docker_client, run_id) == []


def test_a_failed_node_is_node_lost_uncounted_and_the_shard_runs_again(
    ws: Workspace, pushed_base: str, slurm: SlurmCluster, docker_client: Any
) -> None:
    # Killing slurmd does not do it here: the tasks' slurmstepd lives on, and slurmctld
    # waits SlurmdTimeout (300 s) before it calls the node down. So the node is set DOWN,
    # as slurmctld does with a node that stopped answering: its tasks end NODE_FAIL.
    spec = array(ws, pushed_base, n=2, k=2)
    out = ws.root / "out"
    proc = ws.start("run", str(spec), "--on", "slurm", "-o", f"out={out}", "-i", "pause=15")
    run_id = ws.run_id()
    try:
        wait_for(
            lambda: len(run_containers(docker_client, run_id, running=True)) == 2,
            timeout_s=60,
            what="2 shards running on Slurm",
        )
        down = slurm_cmd("scontrol", "update", "NodeName=localhost", "State=DOWN", "Reason=cx-test")
        assert "error" not in down.lower(), down
    finally:
        slurm_cmd("scontrol", "update", "NodeName=localhost", "State=RESUME")  # may be back
        wait_for(
            lambda: slurm_cmd("sinfo", "-h", "-o", "%t").split()[0] in ("idle", "mix", "alloc"),
            timeout_s=30,
            what="the node back in service",
        )
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    shards = ws.shards(run_id)
    for i in range(2):
        kinds = [(a.failure, a.counted) for a in shards[i].attempts]
        assert kinds == [("node_lost", False), (None, True)], shards[i].attempts
        assert shards[i].state == "succeeded"
    rec = ws.record(run_id)
    assert rec.state == "succeeded" and len(rec.scheduler.job_ids) == 2  # type: ignore[union-attr]
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(2)}
    assert run_containers(docker_client, run_id) == []


@pytest.mark.podman
def test_with_podman_each_node_runs_podman_and_a_node_without_it_fails_clearly(
    ws: Workspace, pushed_base: str
) -> None:
    """No Docker anywhere (DOCKER_HOST points nowhere): the workers use the run's engine."""
    if TEST_ENGINE != "podman":
        pytest.skip("runs with the Podman engine tests (make test ENGINE=podman)")
    spec = array(ws, pushed_base)
    no_docker = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    out = ws.root / "out"
    done = ws.cli("--engine", "podman", "run", str(spec), "--on", "slurm", "-o", f"out={out}",
                  env=no_docker)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert outputs_of(out) == {f"{i}.txt": f"done {i}\n" for i in range(3)}
    rec = ws.record(ws.run_id())
    assert rec.engine is not None and rec.engine.name == "podman"

    # A node with neither podman on its PATH nor a service: each task fails in one line.
    no_podman = "--export=ALL,PATH=/nonexistent,CONTAINEREXEC_PODMAN_HOST=unix:///dev/null/p.sock"
    began = time.monotonic()
    failed = ws.cli("--engine", "podman", "run", str(spec), "--on", "slurm", "--no-cache", "-o",
                    f"out={ws.root / 'out2'}", env={**no_docker,
                    "CONTAINEREXEC_SLURM_OPTIONS": no_podman})  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert time.monotonic() - began < 90
    run_dir = ws.store.run_dir(ws.store.resolve_id("last"))
    logs = "".join(p.read_text() for p in sorted((run_dir / "slurm").glob("*.out")))
    assert "Error: No Podman engine answers at /dev/null/p.sock (podman is not installed)" in logs
