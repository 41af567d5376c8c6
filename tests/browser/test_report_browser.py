"""Reports drawn in a real browser (headless Chromium): the timeline, the memory and CPU
charts, the failures and a pipeline's DAG render, with no JavaScript error and no request
leaving the file; a 10,000-shard report stays under 3 MB and draws only the rows in view.

The render time is recorded (`drawn_ms`, shown with -rP); bench/report.py prints it
beside the build time. No test asserts a number of seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pipelines import Kit
from synthetic_runs import mixed_pipeline, write_run
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli import cli

from .conftest import open_report


def report(runs_dir: Path, ref: str, out: Path) -> dict[str, Any]:
    """`containerexec report REF -o OUT`; the page's inline data."""
    result = CliRunner().invoke(cli, ["--runs-dir", str(runs_dir), "report", ref, "-o", str(out)])
    assert result.exit_code == 0, result.output
    found = re.search(r'id="report-data">(.*?)</script>', out.read_text())
    assert found
    return dict(json.loads(found.group(1)))


def test_ten_thousand_shards_under_3_mb_drawn_lazily_without_errors(
    browser: Any, tmp_path: Path, record_property: Any
) -> None:
    run_id = write_run(tmp_path / "runs", 10_000)
    out = tmp_path / "big.html"
    run = report(tmp_path / "runs", run_id, out)["run"]
    assert out.stat().st_size <= 3 << 20, out.stat().st_size
    opened = open_report(browser, out)
    record_property("drawn_ms", opened.drawn_ms)
    print(
        f"10,000 shards: {out.stat().st_size / (1 << 20):.2f} MiB, drawn in "
        f"{opened.drawn_ms:.0f} ms"
    )
    opened.check_clean()
    # the timeline draws the rows in view, not 10,000 of them; the overview the whole run
    rows = opened.count(".timeline svg.rows rect")
    assert 20 <= rows <= 200, rows
    assert opened.count("svg.overview rect") > 50
    # memory against the limit, and CPU: one bar per group of shards, the limit drawn
    assert opened.count("svg.memory rect.bar") > 100
    assert opened.count("svg.memory line.limit") == 1
    assert opened.count("svg.cpu rect.bar") > 100
    limit = run["memory_limit"]
    near = [r for r in run["shards"] if r[3] is not None and r[3] >= 0.9 * limit]
    assert opened.count(".resources .warnline") == min(5, len(near)) > 0
    # failures grouped by kind, in the order of their counts
    kinds = [f"{g['kind']}: {g['count']} shards" for g in run["failures"]]
    assert opened.text(".failures h4") == kinds == ["exit_code 1: 510 shards", "oom: 100 shards"]
    # scrolled to the end, the last shard's row is drawn
    opened.page.evaluate(
        "() => { const b = document.querySelector('.gantt'); b.scrollTop = b.scrollHeight; }"
    )
    opened.page.wait_for_function(
        "() => [...document.querySelectorAll('.gantt svg text')].some(t => t.textContent == '9999')"
    )
    # 'failed' shows the failed shards' rows only
    opened.page.select_option(".timeline select.rows", "failed")
    first_failed = next(r[0] for r in run["shards"] if run["states"][r[1]] == "failed")
    # The rows are redrawn from the select's change event, and again on the frame after
    # the scroll back to the top: wait for that, on a loaded machine too.
    opened.page.wait_for_function(
        "(want) => { const t = document.querySelector('.gantt svg text');"
        " return t !== null && t.textContent === want; }",
        arg=str(first_failed),
    )
    assert opened.text(".gantt svg text")[0] == str(first_failed)
    # a group's repro commands are built when it is opened
    before = opened.count(".failures pre.repro")
    opened.page.locator(".failures details.all-repro > summary").first.click()
    lines = opened.text(".failures details.all-repro pre.repro")[0].splitlines()
    assert opened.count(".failures pre.repro") == before + 1
    shards = run["failures"][0]["signatures"][0]["shards"]
    assert lines[0] == f"containerexec repro {run_id} --shard {shards[0]}"
    assert len(lines) == len(shards)
    opened.check_clean()


SPEC = """\
name: flaky
command: [python3, -c, "import sys; i = int(sys.argv[1]); print('shard', i);
          i == 1 and sys.exit(print('bad input in shard', i, file=sys.stderr) or 3)",
          "${{shard.index}}"]
array: {range: 3}
retries: {max_attempts: 2, on_exit_codes: [3], backoff: {initial: 0.1s}}
resources: {memory: 256m}
"""


@pytest.mark.docker
def test_a_real_failing_run_shows_its_retry_its_failure_and_its_repro_line(
    browser: Any, workspace: Workspace
) -> None:
    done = workspace.cli("run", str(workspace.spec(SPEC)))
    assert done.returncode == 1, done.stderr  # an array with a failed shard
    run_id = workspace.run_id()
    out = workspace.root / "report.html"
    run = report(workspace.runs_dir, "last", out)["run"]
    opened = open_report(browser, out)
    opened.check_clean()
    # four attempts: shard 1 ran twice, the first one drawn as retried
    assert opened.count(".timeline svg.rows rect") == 4
    assert opened.count(".timeline svg.rows rect.retried") == 1
    assert opened.count(".timeline svg.rows rect.o-failed") == 2
    assert opened.text(".failures h4") == ["exit_code 3: 1 shard"]
    assert "bad input in shard 1" in opened.text(".failures pre.tail")[0]
    (repro,) = opened.text(".failures pre.repro")
    assert repro == f"containerexec repro {run_id} --shard 1"
    assert f"Reproduce here: {repro} [--shell]" in done.stderr  # the line `run` printed
    # memory: a bar per shard with a recorded peak, or the note that none was recorded
    peaks = [r for r in run["shards"] if r[3] is not None]
    assert run["memory_limit"] == 256 << 20
    if peaks:
        assert opened.count("svg.memory rect.bar") == len(peaks)
    else:
        assert "No resource trace" in opened.text(".resources .note")[0]


def test_a_pipeline_runs_dag_links_each_job_to_its_run(browser: Any, tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    pid = mixed_pipeline(kit)
    out = tmp_path / "pipeline.html"
    report(kit.store.root, pid, out)
    opened = open_report(browser, out)
    opened.check_clean()
    jobs = opened.page.locator("svg.dag a")
    assert jobs.count() == 5 and opened.count("svg.dag path[marker-end]") == 4
    states = {
        jobs.nth(i).locator("text.name").text_content(): jobs.nth(i)
        .locator("rect")
        .get_attribute("class")
        for i in range(5)
    }
    assert states == {
        "a": "job s-ran",
        "b": "job s-ran",
        "c": "job s-cached",
        "e": "job s-failed",
        "f": "job s-skipped",
    }
    # each job that ran links to its run's section, which has its own timeline
    assert opened.count("section.run") == 4 == opened.count("section.run .timeline")
    name_e = opened.page.locator("text.name", has_text=re.compile("^e$"))
    jobs.filter(has=name_e).click()
    assert opened.page.evaluate("location.hash") == f"#run-{pid}.e"
    assert opened.page.locator(f"section[id='run-{pid}.e'] .failures h4").text_content() == (
        "exit_code 3: 1 shard"
    )
    assert jobs.nth(4).get_attribute("href") is None  # f was skipped: no run to link
    opened.check_clean()
