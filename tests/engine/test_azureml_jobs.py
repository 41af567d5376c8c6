"""Issue 25 in real containers: a pipeline component used twice, a parallel job over 1,000
lines and optional segments with shell syntax, each run as written in specs/azureml/, with
hostile values arriving byte for byte and nothing in them run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.test_azureml import EXAMPLES, IMAGES, cx

HOSTILE = "; touch /outputs/o/pwned1 # $(touch pwned2) `touch pwned3` \"q\" 'q' \\ * tab\there"


def _record(runs: Path) -> dict:
    records = [json.loads(p.read_text()) for p in (runs / "pipelines").glob("*/pipeline.json")]
    return max(records, key=lambda r: r["started_at"])


def _log(run_dir: Path, shard: dict) -> str:
    return (run_dir / shard["log_path"]).read_text()


def test_a_component_used_twice_runs_as_two_sub_dags_and_reruns_from_the_cache(
    tmp_path: Path,
) -> None:
    runs, all_words, long_words = tmp_path / "runs", tmp_path / "all", tmp_path / "long"
    args = ["pipeline", "run", str(EXAMPLES / "twice.yml"), *IMAGES, "-i", f"label={HOSTILE}"]
    first = cx(runs, *args, "-o", f"all_words={all_words}", "-o", f"long_words={long_words}")
    assert first.exit_code == 0, first.output
    # The label reached the component's job through two bindings and one segment, literally.
    assert (all_words / "label.txt").read_text() == HOSTILE
    assert (all_words / "total.txt").read_text() == "16\n"
    # The second use binds min_length 4 and no label: its segment was dropped.
    assert sorted(p.name for p in long_words.iterdir()) == ["total.txt"]
    assert (long_words / "total.txt").read_text() == "1\n"
    assert "job short/count succeeded" in first.stderr and " long/keep " in first.stderr
    rec = _record(runs)
    jobs = {"short/count", "short/keep", "long/count", "long/keep"}
    assert set(rec["jobs"]) == jobs
    run_ids = {n: j["run_id"] for n, j in rec["jobs"].items()}
    assert run_ids["short/keep"] == f"{rec['id']}.short.keep"
    assert (runs / "pipelines" / rec["id"] / "jobs" / "short" / "keep" / "summary").is_dir()
    assert not list(tmp_path.rglob("pwned*"))
    assert len(list((runs / "cache").glob("*/*"))) == 4  # each use has its own cache keys
    # A second run is served from the cache, job by job.
    again = cx(
        runs, *args, "-o", f"all_words={tmp_path / 'a2'}", "-o", f"long_words={tmp_path / 'l2'}"
    )
    assert again.exit_code == 0, again.output
    assert {n: j["shards_cached"] for n, j in _record(runs)["jobs"].items()} == dict.fromkeys(
        jobs, 1
    )
    assert (tmp_path / "l2" / "total.txt").read_text() == "1\n"
    # A job of a sub-DAG is replayed by its 'parent/child' name.
    replay = cx(runs, "repro", rec["id"], "--job", "short/keep", "--shard", "0", "--print")
    assert replay.exit_code == 0, replay.output
    assert "docker run" in replay.output


def test_a_parallel_job_over_1000_lines_runs_each_mini_batch_as_a_shard_and_appends_in_order(
    tmp_path: Path,
) -> None:
    runs, scored = tmp_path / "runs", tmp_path / "scored.txt"
    args = ["pipeline", "run", str(EXAMPLES / "parallel.yml"), *IMAGES, "-o", f"scored={scored}"]
    result = cx(runs, *args, "-i", f"suffix={HOSTILE}")
    assert result.exit_code == 0, result.output
    lines = (EXAMPLES / "data" / "lines.txt").read_text().splitlines()
    assert scored.read_text() == "".join(f"{len(t.split())}\t{t}{HOSTILE}\n" for t in lines)
    rec = _record(runs)
    assert set(rec["jobs"]) == {"score/mini_batches", "score/append_rows"}
    batches = rec["jobs"]["score/mini_batches"]
    assert batches["shards"] == 40  # one shard, one record, per mini-batch of 25 lines
    run_dir = runs / "runs" / batches["run_id"]
    assert len(list((run_dir / "shards").glob("*.json"))) == 40
    run = json.loads((run_dir / "run.json").read_text())
    assert run["spec"]["array"]["group"] == 25 and run["spec"]["retries"]["max_attempts"] == 2
    # init() once per container (its interpreter), in the log of its first mini-batch.
    shards = [json.loads(p.read_text()) for p in (run_dir / "shards").glob("*.json")]
    containers = {a["container_id"] for s in shards for a in s["attempts"]}
    inits = [s["index"] for s in shards if "init() in process" in _log(run_dir, s)]
    assert 1 < len(containers) < 40 and len(inits) == len(containers), (containers, inits)
    # One mini-batch replays alone, in its own container, with the same 25 lines.
    replay = cx(runs, "repro", batches["run_id"], "--shard", "37")
    assert replay.exit_code == 0, replay.output
    assert replay.output.count("init() in process") == 1  # then run() on its 25 lines
    rows = list((runs / "runs").glob("score-repro-*/outputs/aml_rows/*.txt"))
    assert [p.name for p in rows] == ["000037.txt"]
    assert rows[0].read_text().splitlines() == scored.read_text().splitlines()[925:950]
    assert not list(tmp_path.rglob("pwned*"))


def test_optional_segments_with_shell_syntax_come_and_go_and_run_no_value(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "segments.yml")
    given, unset = tmp_path / "given", tmp_path / "unset"
    both = cx(
        tmp_path / "runs", "run", spec, "-i", f"text={HOSTILE}", "-i", f"shout={HOSTILE}",
        "-i", f"extra={HOSTILE}\nline2", "-o", f"out={given}",
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    assert (given / "text.txt").read_text() == HOSTILE
    assert (given / "shout.txt").read_text() == HOSTILE.upper()  # inside "$(... | tr ...)"
    assert (given / "extra.txt").read_text() == f"{HOSTILE}\nline2"
    alone = cx(tmp_path / "runs", "run", spec, "-i", f"text={HOSTILE}", "-o", f"out={unset}")
    assert alone.exit_code == 0, alone.output
    assert sorted(p.name for p in unset.iterdir()) == ["text.txt"]
    assert not list(tmp_path.rglob("pwned*"))
