"""Issue 10, items 9-10, moved from tests/engine/test_cache_truth.py: the cache keys a glob
shard's own file only, and resume refuses changed inputs (or records what each shard read).
Cache keys, manifests and resume checks are ours, so tests/fakes.FakeEngine plays the
commands. A Python module's code and a changed build folder stay engine tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import FakeEngine, Outcome
from helpers import BASE_IMAGE, job_containers

from containerexec.errors import InputsChanged
from containerexec.model.invocation import Invocation
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.repro.planning import plan_replay
from containerexec.store.export import export_run
from containerexec.store.tree import RunStore

GLOB_MODULE = f"""\
name: listing
environment: {{image: '{BASE_IMAGE}', pull: never}}
inputs: {{corpus: {{type: directory}}}}
outputs: {{seen: {{type: directory}}}}
command: [sh, -c, 'ls "$(dirname "$0")" > "$1"; wc -c < "$0" >> "$1"',
          "${{{{inputs.corpus}}}}/${{{{shard.value}}}}",
          "${{{{outputs.seen}}}}/${{{{shard.value}}}}.ls"]
array: {{glob: {{input: corpus, pattern: "*.txt"}}, max_parallel: 4}}
"""
GLOB_PIPELINE = """\
name: listings
inputs: {corpus: {type: directory}}
outputs: {seen: "${{jobs.list.outputs.seen}}"}
jobs:
  list: {module: listing.yaml, inputs: {corpus: "${{inputs.corpus}}"}}
"""


def listing(inv: Invocation, n: int) -> Outcome:
    """GLOB_MODULE's command: what the shard's input folder shows inside, and its file's size."""
    inputs = [m for m in inv.mounts if m.kind == "input"]
    [file] = [m for m in inputs if m.target == inv.argv[3]]
    shown = sorted(Path(m.target).name for m in inputs if Path(m.target).parent.name == "corpus")
    text = "".join(f"{name}\n" for name in shown) + f"{Path(file.source).stat().st_size}\n"
    return Outcome(files={f"seen/{Path(file.target).name}.ls": text.encode()})


def test_one_added_file_in_a_globbed_corpus_runs_one_container(tmp_path: Path) -> None:
    (tmp_path / "listing.yaml").write_text(GLOB_MODULE)
    (tmp_path / "listings.yaml").write_text(GLOB_PIPELINE)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"doc{i}.txt").write_text("x" * (i + 1))
    store = RunStore(tmp_path / "runs")
    engine = FakeEngine(listing)

    def run(out: str) -> PipelineResult:
        orch = Orchestrator(engine, store, grace_s=1)
        plan = check_pipeline(tmp_path / "listings.yaml")
        return orch.run(plan, {"corpus": str(corpus)}, {"seen": str(tmp_path / out)})

    first = run("first")
    assert first.record.state == "succeeded"
    assert job_containers(store, first) == {"list": 8}
    # Each shard saw its own file alone, at the path the whole folder would give it.
    assert (tmp_path / "first" / "doc3.txt.ls").read_text() == "doc3.txt\n4\n"
    (corpus / "new.txt").write_text("fresh")
    second = run("second")
    assert second.record.state == "succeeded"
    job = second.record.jobs["list"]
    why = {  # if this ever differs: which shards ran, and how each attempt ended
        i: (s.value, s.cached, [(a.exit_code, a.failure, a.counted) for a in s.attempts])
        for i, s in store.load_shards(job.run_id or "").items()
    }
    assert job_containers(store, second) == {"list": 1}, why
    assert (job.shards, job.shards_cached) == (9, 8)
    assert (tmp_path / "second" / "new.txt.ls").read_text() == "new.txt\n5\n"
    assert len(list((tmp_path / "second").iterdir())) == 9
    shard = store.load_shards(job.run_id)[0]
    inputs = [m for m in shard.invocation.mounts if m.kind == "input"]
    assert [(m.target, m.is_file) for m in inputs] == [("/inputs/corpus/doc0.txt", True)]


FLAKY = """\
name: flaky
inputs: {data: {type: directory}}
outputs: {out: {type: directory}}
array: {range: 2}
command: [sh, -c, 'if [ "$2" = 1 ] && [ ! -e "$0/fixed" ]; then exit 3; fi; ls "$0" > "$1/$2"',
          "${{inputs.data}}", "${{outputs.out}}", "${{shard.index}}"]
"""


def flaky(inv: Invocation, n: int) -> Outcome:
    """FLAKY's command: shard 1 fails until data/fixed exists; each lists the data folder."""
    [data] = [Path(m.source) for m in inv.mounts if m.name == "data"]
    if inv.shard_index == 1 and not (data / "fixed").exists():
        return Outcome(exit_code=3, files={})
    listed = "".join(f"{p.name}\n" for p in sorted(data.iterdir()))
    return Outcome(files={f"out/{inv.shard_index}": listed.encode()})


def test_resume_refuses_changed_inputs_with_the_list_of_differences(
    workspace: FakeWorkspace,
) -> None:
    workspace.engine.script = flaky
    spec = workspace.spec(FLAKY)
    data = workspace.folder("data", {"a.txt": "a"})
    first = workspace.cli("run", str(spec), "-i", f"data={data}", "-o", "out=out")
    assert first.returncode == 1, first.stderr
    run_id = workspace.run_id()
    before = workspace.shards()
    (data / "fixed").write_text("")
    (data / "a.txt").write_text("A")
    again = workspace.cli("run", str(spec), "--resume", run_id)
    assert again.returncode == 1, again.stderr
    assert "added    data/fixed" in again.stderr
    assert "changed  data/a.txt (same size, different content)" in again.stderr
    assert "--accept-input-changes" in again.stderr
    assert "Traceback" not in again.stderr
    assert workspace.shards()[1].attempts == before[1].attempts  # nothing ran


def test_resume_accepting_changed_inputs_records_what_each_shard_read(
    workspace: FakeWorkspace,
) -> None:
    workspace.engine.script = flaky
    spec = workspace.spec(FLAKY)
    data = workspace.folder("data", {"a.txt": "a"})
    assert workspace.cli("run", str(spec), "-i", f"data={data}", "-o", "out=out").returncode == 1
    run_id = workspace.run_id()
    (data / "fixed").write_text("")
    again = workspace.cli("run", str(spec), "--resume", run_id, "--accept-input-changes")
    assert again.returncode == 0, again.stderr
    assert "added    data/fixed" in again.stderr  # said, not hidden
    shards = workspace.shards()
    assert shards[0].input_manifests is None  # it read what the run recorded
    seen = shards[1].input_manifests
    assert seen is not None and [e.path for e in seen["data"]] == ["a.txt", "fixed"]
    source = export_run(workspace.store, run_id)
    plan_replay(workspace.store, source, shard=1)  # checks against what shard 1 read: same
    with pytest.raises(InputsChanged, match="added    data/fixed"):
        plan_replay(workspace.store, source, shard=0)
