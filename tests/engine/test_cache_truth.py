"""Issue 10, items 8-11 on the real engine: the cache keys a Python module's code and a glob
shard's own file only; resume refuses changed inputs (or records what each shard read) and
says when the module's build folder changed since the run started."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.engine.docker import DockerEngine
from containerexec.errors import InputsChanged
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.repro.planning import plan_replay
from containerexec.store.export import export_run
from containerexec.store.tree import RunStore

PY_MODULE = f'''
from containerexec.authoring import InputFile, OutputFile, module, pipeline


@module(image="{BASE_IMAGE}")
def shout(src: InputFile, out: OutputFile) -> None:
    out.write_text(src.read_text().upper())


@pipeline(name="loud")
def loud(src: InputFile):
    return {{"out": shout(src=src).outputs.out}}
'''


def containers(store: RunStore, result: PipelineResult) -> dict[str, int]:
    """Per job: how many containers its run created (a cached shard creates none)."""
    return {
        name: sum(len(s.attempts) for s in store.load_shards(job.run_id).values())
        for name, job in result.record.jobs.items()
        if job.run_id
    }


def test_editing_a_python_module_body_reruns_its_job_and_no_edit_is_served_from_cache(
    tmp_path: Path, test_session_label: dict[str, str]
) -> None:
    code, src = tmp_path / "loudmods.py", tmp_path / "in.txt"
    code.write_text(PY_MODULE)
    src.write_text("hello")
    store = RunStore(tmp_path / "runs")

    def run(out: str) -> PipelineResult:
        pipe = load_target(f"{code}:loud")  # imported afresh, as a new process would
        return pipe.run(  # type: ignore[no-any-return]
            src=src, out=tmp_path / out, runs_dir=tmp_path / "runs", labels=test_session_label
        )

    first = run("a.txt")
    assert containers(store, first) == {"shout": 1}
    same = run("b.txt")
    assert containers(store, same) == {"shout": 0} and same.record.jobs["shout"].cached
    code.write_text(PY_MODULE.replace(".upper()", ".lower() + '!'"))
    edited = run("c.txt")
    assert containers(store, edited) == {"shout": 1}
    assert not edited.record.jobs["shout"].cached
    assert (tmp_path / "c.txt").read_text() == "hello!"


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


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    eng = DockerEngine.from_env()
    yield eng
    eng.api.close()


def test_one_added_file_in_a_globbed_corpus_runs_one_container(
    tmp_path: Path, engine: DockerEngine, test_session_label: dict[str, str]
) -> None:
    (tmp_path / "listing.yaml").write_text(GLOB_MODULE)
    (tmp_path / "listings.yaml").write_text(GLOB_PIPELINE)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"doc{i}.txt").write_text("x" * (i + 1))
    store = RunStore(tmp_path / "runs")

    def run(out: str) -> PipelineResult:
        orch = Orchestrator(engine, store, labels=test_session_label, grace_s=1)
        plan = check_pipeline(tmp_path / "listings.yaml")
        return orch.run(plan, {"corpus": str(corpus)}, {"seen": str(tmp_path / out)})

    first = run("first")
    assert first.record.state == "succeeded"
    assert containers(store, first) == {"list": 8}
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
    assert containers(store, second) == {"list": 1}, why
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


def test_resume_refuses_changed_inputs_with_the_list_of_differences(
    workspace: Workspace,
) -> None:
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
    workspace: Workspace,
) -> None:
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


def test_resume_after_the_build_folder_changed_says_so_and_keeps_the_runs_image(
    workspace: Workspace, docker_client: Any
) -> None:
    name = f"ctxmod-{uuid.uuid4().hex[:8]}"
    ctx = workspace.folder("ctx", {"marker": "A\n"})
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY marker /marker\n")
    spec = workspace.spec(
        textwrap.dedent(f"""\
        name: {name}
        environment: {{build: ctx}}
        outputs: {{out: {{type: directory}}}}
        array: {{range: 2}}
        command: [sh, -c, 'cat /marker > "$0/$1"', "${{{{outputs.out}}}}", "${{{{shard.index}}}}"]
        """)
    )
    try:
        first = workspace.cli("run", str(spec), "-o", "out=out", "--shard", "0")
        assert first.returncode == 0, first.stderr
        run_id = workspace.run_id()
        (ctx / "marker").write_text("B\n")
        again = workspace.cli("run", str(spec), "--resume", run_id)
        assert again.returncode == 0, again.stderr
        said = [line for line in again.stderr.splitlines() if "build folder" in line]
        assert len(said) == 1, again.stderr
        assert str(ctx) in said[0] and "changed" in said[0]
        assert f"containerexec run {spec}" in said[0]
        out = workspace.root / "out"
        assert [(out / str(i)).read_text() for i in (0, 1)] == ["A\n", "A\n"]
        steady = workspace.cli("run", str(spec), "-o", "out=out2")  # a new run builds B
        assert steady.returncode == 0, steady.stderr
        assert (workspace.root / "out2" / "1").read_text() == "B\n"
    finally:
        for image in docker_client.images.list(name=f"containerexec/{name}"):
            docker_client.images.remove(image.id, force=True)
