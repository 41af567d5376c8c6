"""The report, without a browser: records -> facts (failures grouped, traces read defensively,
repro lines as `run` prints them), the page's safety (no request, no markup from records),
its size at 10,000 failing shards, the DAG of a pipeline, and `containerexec report`.

What the page draws is checked in a real browser (tests/browser/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pipelines import Kit
from synthetic_runs import mixed_pipeline

from containerexec.cli import App, cli
from containerexec.model.invocation import Invocation, Limits
from containerexec.report import facts, make_report, page, sources
from containerexec.run.results import shard_failed
from containerexec.store.records import (
    AttemptRecord,
    ImageRecord,
    RunRecord,
    ShardRecord,
    write_json,
)
from containerexec.store.tree import RunStore

RUN = "wc-20260101-000000-aaaaaa"
T0 = 1_800_000_000.0


def run_record(n: int, **changes: Any) -> RunRecord:
    rec = RunRecord(
        run_id=RUN,
        module="wc",
        version="1.0.0",
        spec_path=None,
        spec={"name": "wc", "resources": {"memory": "1g"}, "array": {"range": n}},
        image=ImageRecord(
            ref="wc:1", pinned="sha256:" + "1" * 64, id="sha256:" + "1" * 64, source="build"
        ),
        inputs={},
        outputs={},
        shard_count=n,
        max_parallel=4,
        state="failed",
        started_at=T0,
        ended_at=T0 + 100,
    )
    return rec.model_copy(update=changes)


def shard(
    i: int,
    n: int,
    *,
    failure: str | None = None,
    code: int = 0,
    tail: list[str] | None = None,
    tries: int = 1,
) -> ShardRecord:
    inv = Invocation(
        run_id=RUN,
        module="wc",
        image="sha256:" + "1" * 64,
        argv=["wc"],
        user="1:1",
        name=f"cx-{i}",
        shard_index=i,
        shard_count=n,
        limits=Limits(memory_bytes=1 << 30),
    )
    attempts = [
        AttemptRecord(
            number=t + 1,
            started_at=T0 + 10 * t,
            ended_at=T0 + 10 * t + 5,
            exit_code=code if t == tries - 1 else 137,
            failure=failure if t == tries - 1 else "exit_code",
        )
        for t in range(tries)
    ]
    return ShardRecord(
        run_id=RUN,
        index=i,
        value=f"v{i}",
        state="failed" if failure else "succeeded",
        failure=failure,
        exit_code=code,
        log_path=f"/logs/{i}.log",
        log_tail=tail or [],
        attempts=attempts,
        invocation=inv,
    )


def data_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html)
    assert found, "no inline data"
    return dict(json.loads(found.group(1)))


# -- facts --------------------------------------------------------------------------------


def test_failures_are_grouped_by_kind_then_by_their_last_line_with_numbers_blanked() -> None:
    n = 6
    shards = [
        shard(0, n),
        shard(1, n, failure="exit_code", code=2, tail=["x", "ValueError: bad row 17"]),
        shard(2, n, failure="exit_code", code=2, tail=["ValueError: bad row 3"]),
        shard(3, n, failure="exit_code", code=2, tail=["KeyError: 'a'"]),
        shard(4, n, failure="oom", code=137, tail=["loading"]),
        shard(5, n, failure="exit_code", code=1, tail=["boom"]),
    ]
    groups = facts.failure_groups(run_record(n), [s for s in shards if s.failure])
    assert [(g["kind"], g["count"]) for g in groups] == [
        ("exit_code 2", 3),
        ("exit_code 1", 1),
        ("oom", 1),
    ]
    sigs = groups[0]["signatures"]
    assert [(s["line"], s["shards"]) for s in sigs] == [
        ("ValueError: bad row 17", [1, 2]),
        ("KeyError: 'a'", [3]),
    ]
    assert sigs[0]["tail"] == ["x", "ValueError: bad row 17"]


def test_each_failed_shard_carries_the_repro_line_that_run_prints() -> None:
    rec = run_record(3)
    failed = shard(1, 3, failure="exit_code", code=2, tail=["no"])
    (group,) = facts.failure_groups(rec, [failed])
    line = group["signatures"][0]["repro"][0]
    assert line == f"containerexec repro {RUN} --shard 1"
    assert f"Reproduce here: {line} [--shell]" in str(shard_failed(rec, failed))


def test_a_kind_with_many_distinct_errors_shows_twelve_lines_the_last_one_the_rest() -> None:
    n = 30
    shards = [
        shard(i, n, failure="exit_code", code=1, tail=[f"error {chr(65 + i)}"]) for i in range(n)
    ]
    (group,) = facts.failure_groups(run_record(n), shards)
    sigs = group["signatures"]
    assert len(sigs) == facts.SIGNATURES
    assert sigs[-1]["line"] == "(other last lines)"
    assert sum(len(s["shards"]) for s in sigs) == n == len({i for s in sigs for i in s["shards"]})


def write_with_traces(tmp_path: Path, traces: list[Any]) -> RunStore:
    """One shard whose attempts carry `traces` as recorded (None: no trace key at all)."""
    store = RunStore(tmp_path)
    rec = run_record(1)
    store.write_run(rec)
    data = shard(0, 1, failure="oom", code=137, tries=len(traces)).model_dump(mode="json")
    for attempt, trace in zip(data["attempts"], traces, strict=True):
        if trace is not None:
            attempt["trace"] = trace
    write_json(store.shard_path(RUN, 0), data)
    return store


def test_traces_are_read_whether_or_not_the_record_model_knows_them(tmp_path: Path) -> None:
    good = {
        "peak_memory_bytes": 900 << 20,
        "cpu_seconds": 2.5,
        "wall_seconds": 5,
        "read_bytes": 10,
        "write_bytes": None,
    }
    store = write_with_traces(tmp_path, [good, dict(good, peak_memory_bytes=1 << 30)])
    recs = sources.load_run(store, RUN)
    assert recs.traces[0][0] == sources.Trace(900 << 20, 2.5, 5.0, 10.0, None)
    row = facts.run_facts(recs)["shards"][0]
    # peak: the largest attempt's; CPU, wall and bytes add up; a null stays null
    assert row[3:8] == [1 << 30, 5.0, 10.0, 20.0, None]
    assert facts.run_facts(recs)["memory_limit"] == 1 << 30


def test_old_records_and_hostile_figures_give_no_number_never_a_guess(tmp_path: Path) -> None:
    hostile = {
        "peak_memory_bytes": "9e9",
        "cpu_seconds": float("nan"),
        "wall_seconds": -1,
        "read_bytes": True,
        "write_bytes": [1],
    }
    store = write_with_traces(tmp_path, [None, hostile])
    recs = sources.load_run(store, RUN)
    assert recs.traces[0] == [None, sources.Trace()]
    assert facts.run_facts(recs)["shards"][0][3:8] == [None] * 5


def test_a_malformed_shard_record_is_refused_naming_the_file(tmp_path: Path) -> None:
    store = write_with_traces(tmp_path, [None])
    path = store.shard_path(RUN, 0)
    path.write_text('{"attempts": [{"trace": {}}], "index": "x"}')
    result = CliRunner().invoke(
        cli, ["--runs-dir", str(tmp_path), "report", RUN, "-o", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 2
    assert f"Error: {path}: not a valid record" in result.stderr
    assert not (tmp_path / "r.html").exists()


# -- the page -----------------------------------------------------------------------------


def test_text_from_records_cannot_become_markup_and_nothing_is_fetched() -> None:
    n = 2
    evil = "</script><script>alert(1)</script><img src=http://example.invalid/x>"
    recs = sources.RunRecords(
        run_record(n), [shard(0, n), shard(1, n, failure="exit_code", code=1, tail=[evil])]
    )
    html = page.render({"run": facts.run_facts(recs)}, f"run {evil}")
    assert evil not in html
    assert "<title>run &lt;/script&gt;&lt;script&gt;" in html
    assert html.count("<script") == 2  # the data and the drawing script, nothing injected
    assert "default-src 'none'" in html
    assert data_of(html)["run"]["failures"][0]["signatures"][0]["tail"] == [evil]
    # no resource is named by URL outside the data and the title (where it is inert text)
    outside = re.sub(r"(?s)<title>.*?</title>|id=\"report-data\">.*?</script>", "", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", outside)
    assert "@import" not in outside and "url(http" not in outside


def test_ten_thousand_failing_shards_with_distinct_errors_stay_under_3_mb() -> None:
    n = 10_000
    tail = ["Traceback (most recent call last):", '  File "/app/x.py", line 9, in main'] * 9
    shards = [
        shard(
            i,
            n,
            failure="exit_code",
            code=1 + i % 7,
            tries=3,
            tail=[*tail, f"Error {'xyzw'[i % 4]}{i % 13}: " + "details " * 20],
        )
        for i in range(n)
    ]
    html = page.render({"run": facts.run_facts(sources.RunRecords(run_record(n), shards))}, "r")
    assert len(html.encode()) <= 3 << 20, len(html.encode())
    repro = [
        line
        for g in data_of(html)["run"]["failures"]
        for s in g["signatures"]
        for line in s["repro"]
    ]
    assert len(repro) == n  # every failed shard keeps its exact repro line


# -- pipelines and the command ------------------------------------------------------------


def test_a_pipelines_dag_shows_each_jobs_state_and_links_its_run(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    pid = mixed_pipeline(kit)
    made = make_report(kit.store, pid[:-2])  # a prefix names the pipeline run
    assert (made.kind, made.id) == ("pipeline", pid)
    dag = data_of(made.html)["pipeline"]
    nodes = {n["name"]: n for n in dag["nodes"]}
    assert {k: n["state"] for k, n in nodes.items()} == {
        "a": "ran",
        "b": "ran",
        "c": "cached",
        "e": "failed",
        "f": "skipped",
    }
    assert (nodes["a"]["col"], nodes["b"]["col"], nodes["f"]["col"]) == (0, 1, 2)
    assert nodes["f"]["run"] is None and nodes["e"]["run"] == f"{pid}.e"
    assert dag["edges"] == [["a", "b"], ["a", "c"], ["a", "e"], ["e", "f"]]
    assert dag["edges_from"] == "pipeline file"
    assert [r["id"] for r in dag["runs"]] == [f"{pid}.a", f"{pid}.b", f"{pid}.c", f"{pid}.e"]
    (failed,) = dag["runs"][3]["failures"]
    assert failed["signatures"][0]["repro"] == [f"containerexec repro {pid}.e --shard 1"]
    # the pipeline file gone: the edges between jobs that ran come from their records
    (tmp_path / "p.yaml").unlink()
    again = data_of(make_report(kit.store, pid).html)["pipeline"]
    assert again["edges_from"] == "records"
    assert again["edges"] == [["a", "b"], ["a", "c"], ["a", "e"]]


def test_the_report_command_writes_one_file_and_says_when_it_replaced_one(
    tmp_path: Path,
) -> None:
    kit = Kit(tmp_path)
    pid = mixed_pipeline(kit)
    out = tmp_path / "out" / "report.html"
    runner = CliRunner()
    args = ["--runs-dir", str(kit.store.root), "report"]
    first = runner.invoke(cli, [*args, f"{pid}.e", "-o", str(out)], obj=App(kit.store.root))
    assert first.exit_code == 0, first.output
    assert re.fullmatch(
        rf"report of run {pid}\.e \(3 shard records\): {out} \(0\.\d\d MiB\)\n", first.stdout
    )
    assert data_of(out.read_text())["run"]["id"] == f"{pid}.e"
    second = runner.invoke(cli, [*args, pid, "-o", str(out)])
    assert second.exit_code == 0, second.output
    assert "report of pipeline" in second.stdout and "replaced the file that was there" in (
        second.stdout
    )
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left


def test_an_unknown_run_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--runs-dir", str(tmp_path), "report", "nope", "-o", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "no run 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("ref", ["last", RUN[:6]])
def test_last_and_a_prefix_name_a_run(tmp_path: Path, ref: str) -> None:
    store = RunStore(tmp_path)
    store.write_run(run_record(1))
    store.write_shard(shard(0, 1))
    assert make_report(store, ref).id == RUN


def test_a_hand_made_record_with_odd_resources_or_nan_times_is_refused_or_drawn(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    store.write_run(run_record(1, spec={"resources": "lots"}))
    store.write_shard(shard(0, 1))
    assert data_of(make_report(store, RUN).html)["run"]["memory_limit"] == 1 << 30
    store.write_run(run_record(1, started_at=float("nan")))
    result = CliRunner().invoke(cli, ["--runs-dir", str(tmp_path), "report", RUN])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {store.run_dir(RUN)}: a record holds a number that is not finite\n"
    )
