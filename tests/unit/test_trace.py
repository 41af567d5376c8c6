"""Issue 24 item 1 and 2, without Docker: the cgroup parsers on v1 and v2 file fixtures
(tests/cgroups/), the sampler, the trace in each attempt's record, `runs show --trace`
and the near-limit warning of the end-of-run summary."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fake_pipelines import MODULES, Kit, by_job, chain
from fakes import FAKE_STATS, FakeEngine, Outcome

from containerexec.cli.commands.pipeline import pipeline_summary
from containerexec.engine.base import Stats
from containerexec.engine.cgroups import Cgroup, proc_cgroup
from containerexec.run import trace
from containerexec.run.trace import Sampler

FIXTURES = Path(__file__).resolve().parents[1] / "cgroups"
ID = "0123456789abcdef" * 4
MIB = 1 << 20


def test_v1_figures_come_from_the_memory_cpuacct_and_blkio_folders() -> None:
    cgroup = Cgroup.find(["nothing/here", f"docker/{ID}"], root=FIXTURES / "v1")
    assert cgroup is not None
    assert cgroup.read() == Stats(
        memory_peak_bytes=3801088,
        cpu_seconds=0.039089622,
        read_bytes=3219456,
        write_bytes=3145728,
    )
    assert Cgroup.of_pid(4242, root=FIXTURES / "v1", proc=FIXTURES / "proc") == cgroup
    assert Cgroup.find([f"docker/{'f' * 64}"], root=FIXTURES / "v1") is None


def test_v1_block_io_is_none_until_the_kernel_counts_it_and_zero_for_a_quiet_container(
    tmp_path: Path,
) -> None:
    root = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", root)
    (root / "blkio/docker" / ID / "blkio.throttle.io_service_bytes").write_text("Total 0\n")
    quiet = Cgroup.find([f"docker/{ID}"], root=root)
    assert quiet is not None
    figures = quiet.read()
    assert figures is not None and (figures.read_bytes, figures.write_bytes) == (0, 0)
    (root / "blkio/docker/blkio.throttle.io_service_bytes").write_text("Total 0\n")
    figures = quiet.read()
    assert figures is not None and (figures.read_bytes, figures.write_bytes) == (None, None)
    assert figures.memory_peak_bytes == 3801088  # the other figures stand
    shutil.rmtree(root / "memory/docker" / ID)
    shutil.rmtree(root / "cpuacct/docker" / ID)
    shutil.rmtree(root / "blkio/docker" / ID)
    assert quiet.read() is None  # gone with the container


def test_v2_figures_come_from_one_folder_and_a_kernel_without_memory_peak_gives_none(
    tmp_path: Path,
) -> None:
    rel = f"system.slice/docker-{ID}.scope"
    cgroup = Cgroup.find([f"docker/{ID}", rel], root=FIXTURES / "v2")
    assert cgroup is not None and cgroup.v2 == FIXTURES / "v2" / rel
    assert cgroup.read() == Stats(
        memory_peak_bytes=61865984,
        memory_bytes=1236992,
        cpu_seconds=1.54321,
        read_bytes=3219456 + 4096,
        write_bytes=3145728,
    )
    assert Cgroup.of_pid(4343, root=FIXTURES / "v2", proc=FIXTURES / "proc") == cgroup
    root = tmp_path / "v2"
    shutil.copytree(FIXTURES / "v2", root)
    (root / rel / "memory.peak").unlink()  # before Linux 5.19
    (root / rel / "io.stat").write_text("")  # v2 always counts: no line is no I/O
    older = Cgroup.find([rel], root=root)
    assert older is not None
    figures = older.read()
    assert figures is not None
    assert figures.memory_peak_bytes is None and figures.memory_bytes == 1236992
    assert (figures.read_bytes, figures.write_bytes) == (0, 0)


def test_proc_cgroup_names_each_controller_and_the_unified_line() -> None:
    paths = proc_cgroup((FIXTURES / "proc/4242/cgroup").read_text())
    assert paths["memory"] == paths["cpuacct"] == paths["blkio"] == f"/docker/{ID}"
    assert paths["systemd"] == paths[""] == f"/docker/{ID}"
    assert Cgroup.of_pid(999999, root=FIXTURES / "v1", proc=FIXTURES / "proc") is None


class Scripted:
    """An engine whose stats() answers from a list, then None (the container is gone)."""

    def __init__(self, answers: list[Stats]) -> None:
        self.answers = answers
        self.calls = 0
        self.done = threading.Event()

    def stats(self, container_id: str) -> Stats | None:
        self.calls += 1
        if self.answers:
            return self.answers.pop(0)
        self.done.set()
        return None


def test_the_sampler_keeps_the_largest_sample_where_no_peak_file_and_the_last_counters() -> None:
    engine = Scripted(
        [
            Stats(memory_bytes=5 * MIB, cpu_seconds=0.1, read_bytes=0, write_bytes=0),
            Stats(memory_bytes=9 * MIB, cpu_seconds=0.3, read_bytes=10, write_bytes=20),
            Stats(memory_bytes=7 * MIB, cpu_seconds=0.5, read_bytes=30, write_bytes=40),
        ]
    )
    clock = iter([100.0, 102.5]).__next__
    sampler = Sampler(engine, "c1", clock=clock)  # type: ignore[arg-type]
    assert engine.done.wait(10)
    final = sampler.stop()
    assert (final.peak_memory_bytes, final.cpu_seconds) == (9 * MIB, 0.5)
    assert (final.read_bytes, final.write_bytes, final.wall_seconds) == (30, 40, 2.5)
    assert sampler.stop() is final  # once
    assert engine.calls == 5  # three figures, the None that ended the thread, the last read


def test_each_attempt_records_its_trace_and_the_switch_turns_it_off(
    workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workspace.spec(
        "name: t\ncommand: [sh, -c, 'true']\narray: {range: 2}\n"
        "retries: {max_attempts: 2, backoff: {initial: 0.01}}\n"
    )
    workspace.engine.script = lambda inv, n: Outcome(exit_code=1 if n == 1 else 0)
    workspace.run(spec)
    for rec in workspace.shards().values():
        traces = [a.trace for a in rec.attempts]
        assert len(traces) == 2 and all(t is not None for t in traces), rec.attempts
        t = traces[-1]
        assert t is not None
        assert t.peak_memory_bytes == FAKE_STATS.memory_peak_bytes
        assert t.cpu_seconds == FAKE_STATS.cpu_seconds and t.write_bytes == 4096
        assert t.wall_seconds is not None and t.wall_seconds >= 0 and not t.packed
    monkeypatch.setenv("CONTAINEREXEC_TRACE", "0")
    workspace.run(spec)
    assert all(a.trace is None for r in workspace.shards().values() for a in r.attempts)


NEAR = """\
name: hog
command: [sh, -c, 'true']
array: {values: [small, big, quiet]}
resources: {memory: 64m}
"""


def test_runs_show_trace_sorts_warns_near_the_limit_and_suggests_one(
    workspace: FakeWorkspace,
) -> None:
    big = Stats(memory_peak_bytes=60 * MIB, cpu_seconds=2.0, read_bytes=5, write_bytes=9)

    def script(inv: object, n: int) -> Outcome:
        value = inv.shard_value  # type: ignore[attr-defined]
        return Outcome(stats={"big": big, "quiet": None}.get(value, FAKE_STATS))

    workspace.engine.script = script  # type: ignore[assignment]
    done = workspace.cli("run", str(workspace.spec(NEAR)))
    assert done.returncode == 0, done.stderr
    warning = "warning: shard 1 peaked at 60.0 MiB (94% of its memory limit 64.0 MiB)"
    assert warning in done.stderr and "shard 0 peaked" not in done.stderr
    suggested = "suggested resources.memory: 80m (the largest peak, 60.0 MiB, plus 25%"
    assert suggested in done.stderr

    shown = workspace.cli("runs", "show", "last", "--trace")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[2:5]]
    assert [r[0] for r in rows] == ["1", "0", "2"]  # by peak; none known last
    assert rows[0][3:5] == ["60.0", "MiB"] and rows[2][3] == "-"
    assert warning in shown.stdout and suggested in shown.stdout
    by_shard = workspace.cli("runs", "show", "last", "--trace", "--sort", "shard")
    assert [line.split()[0] for line in by_shard.stdout.splitlines()[2:5]] == ["0", "1", "2"]
    by_cpu = workspace.cli("runs", "show", "last", "--trace", "--sort", "cpu")
    assert [line.split()[0] for line in by_cpu.stdout.splitlines()[2:5]] == ["1", "0", "2"]

    data = json.loads(workspace.cli("runs", "show", "last", "--trace", "--json").stdout)
    assert data["suggested_memory_bytes"] == 80 * MIB
    assert [w["shard"] for w in data["warnings"]] == [1]
    assert data["warnings"][0]["limit_bytes"] == 64 * MIB
    first = data["shards"][0]
    assert first["shard"] == 1 and first["peak_memory_bytes"] == 60 * MIB
    assert first["memory_limit_bytes"] == 64 * MIB and first["cpu_seconds"] == 2.0
    quiet = data["shards"][2]
    assert quiet["shard"] == 2 and quiet["peak_memory_bytes"] is None
    assert quiet["wall_seconds"] is not None  # the host could still time it

    # An export (from a cluster, say) shows the same trace.
    exported = workspace.root / "export.json"
    assert workspace.cli("runs", "export", "last", "-o", str(exported)).returncode == 0
    from_file = workspace.cli("runs", "show", str(exported), "--trace")
    assert warning in from_file.stdout and suggested in from_file.stdout
    reports = json.loads(workspace.cli("runs", "show", str(exported), "--trace", "--json").stdout)
    assert [r["suggested_memory_bytes"] for r in reports] == [80 * MIB]


@pytest.mark.parametrize(
    ("peak", "limit"),
    [(1, 16 * MIB), (51 * MIB, 64 * MIB), (100 * MIB, 128 * MIB), (None, None)],
)
def test_the_suggested_limit_is_the_largest_peak_plus_a_quarter_in_16_mib_steps(
    peak: int | None, limit: int | None
) -> None:
    assert trace.suggested_memory(peak) == limit


def test_a_pipeline_summary_warns_about_a_job_shard_near_its_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = Kit(tmp_path)
    hog = MODULES["step.yaml"].replace("name: step", "name: hog") + "resources: {memory: 64m}\n"
    (tmp_path / "hog.yaml").write_text(hog)
    big = Stats(memory_peak_bytes=63 * MIB, cpu_seconds=1.0)
    engine = FakeEngine(by_job(b=Outcome(stats=big)))
    result = kit.run(engine, kit.plan(chain("a", "b", module="hog.yaml")))
    assert result.state == "succeeded"
    assert [w.shard for w in result.runs["b"].near_limit] == [0]
    assert result.runs["a"].near_limit == []
    pipeline_summary(result)
    err = capsys.readouterr().err
    assert "job b: warning: shard 0 peaked at 63.0 MiB (98% of its memory limit 64.0 MiB)" in err
    assert "job a:" not in err
