"""`containerexec run` driven to its refusals through the CLI with tests/fakes.FakeEngine.

The CLI takes its engine from `App.engine_factory`, so a refusal that comes after the
engine is reached (bindings, -o places, shard selection, secrets) needs no Docker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakes import FakeEngine

from containerexec.cli import App, cli

ROOT = Path(__file__).resolve().parents[2]
WORDCOUNT = ROOT / "specs" / "wordcount.yaml"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def run(engine: FakeEngine, runs: Path, *args: str) -> Result:
    made: list[FakeEngine] = []

    def factory() -> FakeEngine:
        made.append(engine)
        return engine

    app = App(runs_dir=runs, engine_factory=factory, sleep=lambda s: None)
    result = CliRunner().invoke(cli, ["--runs-dir", str(runs), "run", *args], obj=app)
    assert made == [engine], "the CLI made its engine elsewhere than the App's factory"
    return result


def assert_refused(result: Result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line, line
    for phrase in phrases:
        assert phrase in line, line


def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("one two two\n")
    (folder / "b.txt").write_text("three\n")
    return folder


def test_an_unknown_input_is_refused_before_any_container(
    engine: FakeEngine, tmp_path: Path
) -> None:
    result = run(
        engine,
        tmp_path / "runs",
        str(WORDCOUNT),
        "-i",
        f"corpus={corpus(tmp_path)}",
        "-i",
        "nope=1",
    )
    assert_refused(result, "nope")
    assert engine.containers_by_id == {}


def test_a_missing_required_input_is_refused(engine: FakeEngine, tmp_path: Path) -> None:
    result = run(engine, tmp_path / "runs", str(WORDCOUNT))
    assert_refused(result, "corpus")
    assert engine.containers_by_id == {}


def test_a_non_empty_output_place_is_refused_without_overwrite(
    engine: FakeEngine, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.tsv").write_text("mine\n")
    result = run(
        engine,
        tmp_path / "runs",
        str(WORDCOUNT),
        "-i",
        f"corpus={corpus(tmp_path)}",
        "-o",
        f"counts={out}",
    )
    assert_refused(result, str(out), "--overwrite")
    assert (out / "keep.tsv").read_text() == "mine\n"
    assert engine.containers_by_id == {}


def test_a_shard_past_the_array_is_refused(engine: FakeEngine, tmp_path: Path) -> None:
    result = run(
        engine,
        tmp_path / "runs",
        str(WORDCOUNT),
        "-i",
        f"corpus={corpus(tmp_path)}",
        "--shard",
        "7",
    )
    assert_refused(result, "7")
    assert engine.containers_by_id == {}


def test_a_missing_secret_is_refused(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    spec = tmp_path / "secretive.yaml"
    spec.write_text(
        "name: secretive\nversion: 1.0.0\n"
        "environment: {image: containerexec/base:bookworm}\n"
        'secrets: [API_TOKEN]\ncommand: ["true"]\n'
    )
    result = run(engine, tmp_path / "runs", str(spec))
    assert_refused(result, "API_TOKEN")
    assert engine.containers_by_id == {}


def test_an_unreachable_engine_is_one_line_and_exit_1(tmp_path: Path) -> None:
    down = FakeEngine()
    down.reachable = False
    result = run(down, tmp_path / "runs", str(WORDCOUNT), "-i", f"corpus={corpus(tmp_path)}")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert down.containers_by_id == {}
