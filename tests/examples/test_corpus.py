"""The corpus example (specs/corpus/corpus.py), written in Python: a ShardFile glob @module, a
ContainerModule over a glob and a @pipeline. It gives its expected report; after one file of
the corpus changes, a rerun runs one container per job (the other shards come from the
cache, keyed on their own files); and a shard's --with-inputs bundle carries only its file."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from click.testing import CliRunner
from helpers import job_containers

from containerexec.authoring.targets import load_target
from containerexec.cli import App, cli
from containerexec.pipelines.record import PipelineResult
from containerexec.store.tree import RunStore

EXAMPLE = Path(__file__).resolve().parents[2] / "specs" / "corpus"


def test_corpus_example_reruns_one_shard_per_job_after_one_file_changes(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    data = shutil.copytree(EXAMPLE / "data", tmp_path / "corpus")
    runs, store = tmp_path / "runs", RunStore(tmp_path / "runs")

    def run(report: str) -> PipelineResult:
        pipe = load_target(f"{EXAMPLE / 'corpus.py'}:corpus_stats")
        return pipe.run(  # type: ignore[no-any-return]
            corpus=data, report=tmp_path / report, runs_dir=runs, labels=test_session_label
        )

    first = run("first.tsv")
    assert (tmp_path / "first.tsv").read_text() == (EXAMPLE / "expected" / "report.tsv").read_text()
    assert job_containers(store, first) == {"normalise": 12, "wordstats": 12, "merge": 1}

    (data / "animals.txt").write_text("The dog and the fox are friends now.\n")
    second = run("second.tsv")

    assert job_containers(store, second) == {"normalise": 1, "wordstats": 1, "merge": 1}
    cached = {name: job.shards_cached for name, job in second.record.jobs.items()}
    assert cached == {"normalise": 11, "wordstats": 11, "merge": 0}
    assert (tmp_path / "second.tsv").read_text().splitlines()[:2] == ["the\t17", "and\t3"]

    bundle = tmp_path / "shard.tar"
    exported = CliRunner().invoke(
        cli,
        ["--runs-dir", str(runs), "runs", "export", second.record.id, "--job", "normalise",
         "--shard", "0", "--bundle", str(bundle), "--with-inputs"],
        obj=App(runs_dir=runs),
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    with tarfile.open(bundle) as tar:
        inputs = sorted(m.name for m in tar.getmembers() if m.isfile() and "inputs/" in m.name)
    assert inputs == ["inputs/corpus/animals.txt"]
