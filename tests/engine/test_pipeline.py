"""The example pipeline on the real engine, from the CLI, with its real images.

Parallel jobs, the cache, failures, --keep-going and cancellation are DAG rules, unit
tests on the fake engine: tests/unit/test_pipeline_fake.py.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from containerexec.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def test_example_pipeline_runs_from_the_cli_and_places_its_outputs(
    tmp_path: Path, base_image: str, test_session_label: dict[str, str]
) -> None:
    label = "{}={}".format(*next(iter(test_session_label.items())))
    out = tmp_path / "out"
    args = [
        "--runs-dir",
        str(tmp_path / "runs"),
        "pipeline",
        "run",
        str(ROOT / "specs" / "wordstats" / "pipeline.yaml"),
        "-o",
        f"report={out}/top.txt",
        "-o",
        f"totals={out}/totals.tsv",
        "-i",
        "top=5",
        "--label",
        label,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = (out / "top.txt").read_text().splitlines()
    assert len(report) == 5 and report[0].split()[0] == "1"
    totals = dict(line.split("\t") for line in (out / "totals.tsv").read_text().splitlines())
    assert int(totals["the"]) > int(totals["whale"]) > 0
    assert "succeeded" in result.output and "record:" in result.output
