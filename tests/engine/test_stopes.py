"""The stopes-style ContainerModule keeps its promises, in real containers:
array() is evaluated when a run starts, with that run's inputs, and run()'s
return values come back to the caller in shard order, with host paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from containerexec.authoring import Module
from containerexec.authoring.targets import load_target
from containerexec.cli import cli
from containerexec.errors import ShardFailed
from containerexec.run.executor import RunOptions

# Traced when its file is imported, so it lives apart: its array() reads a seed folder.
PIPELINE_SOURCE = '''
from pathlib import Path

from containerexec.authoring import InputDir, pipeline
from stopesmods import Config, CountWords


@pipeline
def counting(corpus: InputDir):
    """A ContainerModule job: its array() must see the corpus this run is given."""
    seed = Path(__file__).parent / "seed"
    job = CountWords(Config(corpus=seed, out=Path("unused"))).as_module()(corpus=corpus)
    return {"counts": job.outputs.out}
'''

SOURCE = '''
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from containerexec.authoring import ContainerModule, InputDir, OutputDir, module


@dataclass
class Config:
    corpus: InputDir
    out: OutputDir


class CountWords(ContainerModule):
    """One shard per file of the corpus; returns what it counted and where it wrote it."""

    image = "containerexec/base:bookworm"

    def array(self):
        # Runs where the run is driven, with the run's own inputs in self.config.
        return sorted(p.name for p in Path(self.config.corpus).iterdir())

    def run(self, iteration_value=None, iteration_index=0):
        text = (self.config.corpus / iteration_value).read_text()
        written = self.config.out / (iteration_value + ".count")
        written.write_text(str(len(text.split())))
        return {"file": iteration_value, "words": len(text.split()),
                "path": written, "text": str(written)}


class Unserialisable(ContainerModule):
    image = "containerexec/base:bookworm"

    def array(self):
        return ["a", "b"]

    def run(self, iteration_value=None, iteration_index=0):
        return {1, 2} if iteration_index == 1 else "fine"


@module(image="containerexec/base:bookworm")
def answer(n: int) -> int:
    """No output at all, only a value."""
    return n * 2


@module(image="containerexec/base:bookworm")
def sneaky(target: str) -> int:
    """Leaves a link to a host file where the value goes, and exits before the entry writes."""
    import os

    os.symlink(target, "/outputs/.containerexec-returned/value.json")
    os._exit(0)
'''


def load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "stopesmods.py"
    if not path.exists():
        path.write_text(SOURCE)
    return load_target(f"{path}:{name}")


def corpus(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


def test_array_is_evaluated_when_each_run_starts_with_that_runs_inputs(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    config, count = load(tmp_path, "Config"), load(tmp_path, "CountWords")
    data = corpus(tmp_path / "data", {"a.txt": "one two", "b.txt": "three"})
    module = count(config(corpus=data, out=tmp_path / "out1")).as_module()
    opts = RunOptions(labels=test_session_label)

    first = module.run(runs_dir=tmp_path / "runs", options=opts)
    assert first.record.shard_count == 2

    corpus(data, {"c.txt": "four five six"})
    second = module.run(runs_dir=tmp_path / "runs", out=tmp_path / "out2", options=opts)
    assert second.record.shard_count == 3
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == [
        "a.txt.count",
        "b.txt.count",
        "c.txt.count",
    ]

    # Another corpus given to run() is the one array() sees.
    other = corpus(tmp_path / "other", {"x.txt": "x", "y.txt": "y", "z.txt": "z", "w.txt": "w"})
    third = module.run(
        runs_dir=tmp_path / "runs", corpus=other, out=tmp_path / "out3", options=opts
    )
    assert third.record.shard_count == 4
    assert [s.get("file") for s in third.values] == ["w.txt", "x.txt", "y.txt", "z.txt"]


def test_run_returns_each_shards_value_in_shard_order_with_host_paths(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    config, count = load(tmp_path, "Config"), load(tmp_path, "CountWords")
    data = corpus(tmp_path / "data", {"b.txt": "three", "a.txt": "one two", "c.txt": "4 5 6"})
    out = tmp_path / "out"
    module = count(config(corpus=data, out=out)).as_module()
    result = module.run(
        runs_dir=tmp_path / "runs", options=RunOptions(labels=test_session_label, max_parallel=3)
    )
    host = str(out.resolve())
    assert result.values == [
        {"file": f, "words": n, "path": f"{host}/{f}.count", "text": f"{host}/{f}.count"}
        for f, n in (("a.txt", 2), ("b.txt", 1), ("c.txt", 3))
    ]
    for value in result.values:
        assert Path(value["path"]).read_text() == str(value["words"])
    # The value file never reaches the outputs.
    assert sorted(p.name for p in out.iterdir()) == ["a.txt.count", "b.txt.count", "c.txt.count"]

    # The shard records keep the values: `runs show --json` shows them.
    shown = CliRunner().invoke(
        cli, ["--runs-dir", str(tmp_path / "runs"), "runs", "show", result.record.run_id, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    shards = sorted(json.loads(shown.output)["shards"], key=lambda s: s["index"])
    assert [s["returned"] for s in shards] == result.values


def test_a_module_with_no_output_still_returns_its_value(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    answer: Module = load(tmp_path, "answer")
    result = answer.run(
        n=21, runs_dir=tmp_path / "runs", options=RunOptions(labels=test_session_label)
    )
    assert result.values == [42]


def test_a_value_that_is_not_json_fails_its_shard_with_a_clear_message(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    module = load(tmp_path, "Unserialisable")().as_module()
    with pytest.raises(ShardFailed) as caught:
        module.run(runs_dir=tmp_path / "runs", options=RunOptions(labels=test_session_label))
    failed = caught.value
    assert failed.shard == 1
    text = str(failed)
    assert "shard 1" in text and "set" in text and "JSON" in text


def test_repro_of_a_shard_that_returns_a_value_reproduces_it(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    answer: Module = load(tmp_path, "answer")
    runs = tmp_path / "runs"
    first = answer.run(n=4, runs_dir=runs, options=RunOptions(labels=test_session_label))
    again = CliRunner().invoke(
        cli, ["--runs-dir", str(runs), "repro", first.record.run_id, "--shard", "0"]
    )
    assert again.exit_code == 0, again.output
    shown = CliRunner().invoke(cli, ["--runs-dir", str(runs), "runs", "list"])
    repro_id = next(w for w in shown.output.split() if w.startswith("answer-repro-"))
    show = CliRunner().invoke(cli, ["--runs-dir", str(runs), "runs", "show", repro_id, "--json"])
    assert [s["returned"] for s in json.loads(show.output)["shards"]] == [8]


def test_a_value_file_that_links_to_a_host_file_is_never_read(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"host": "secret"}')
    module: Module = load(tmp_path, "sneaky")
    result = module.run(
        target=str(secret),
        runs_dir=tmp_path / "runs",
        check=False,
        options=RunOptions(labels=test_session_label),
    )
    assert result.state == "failed" and result.values == [None]
    record = (tmp_path / "runs").rglob("shards/000000.json").__next__().read_text()
    assert json.loads(record)["returned"] is None
    assert '"host"' not in record


def test_a_container_module_job_of_a_pipeline_evaluates_array_with_the_jobs_inputs(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    corpus(tmp_path / "seed", {"only.txt": "traced with this one file"})
    load(tmp_path, "Config")  # writes stopesmods.py, which the pipeline's file imports
    (tmp_path / "counting.py").write_text(PIPELINE_SOURCE)
    counting = load_target(f"{tmp_path / 'counting.py'}:counting")
    runs = {"runs_dir": tmp_path / "runs", "labels": test_session_label, "cache": False}
    two = corpus(tmp_path / "two", {"a.txt": "one", "b.txt": "two words"})
    first = counting.run(corpus=two, counts=tmp_path / "c2", **runs)
    three = corpus(tmp_path / "three", {"a.txt": "1", "b.txt": "2", "c.txt": "3"})
    second = counting.run(corpus=three, counts=tmp_path / "c3", **runs)
    assert [j.shards for j in first.record.jobs.values()] == [2]
    assert [j.shards for j in second.record.jobs.values()] == [3]
    assert sorted(p.name for p in (tmp_path / "c3").iterdir()) == [
        "a.txt.count",
        "b.txt.count",
        "c.txt.count",
    ]
