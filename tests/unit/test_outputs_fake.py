"""Issue 10 items 1-2, moved from tests/engine/test_outputs.py: shards' outputs merge without
loss, a path two shards write fails the later one, and a fresh run never mixes with what is
there. The commit is ours, so tests/fakes.FakeEngine writes what each command would have.

Links, special files and setuid bits made inside real containers stay engine tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome
from helpers import BASE_IMAGE, files_under

from containerexec.cli.status import pipeline_status, run_status
from containerexec.errors import UsageError
from containerexec.model.invocation import Invocation
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.run.executor import Executor
from containerexec.store.tree import RunStore

IDX = "$CONTAINEREXEC_SHARD_INDEX"


def module(ws: FakeWorkspace, script: str, *, array: str = "", extra: str = "") -> Path:
    """A module whose shards run `script` in bash with $1 = the output folder."""
    return ws.spec(
        "name: outs\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [bash, -c, {json.dumps(script)}, outs, '${{{{outputs.out}}}}']\n"
        + (f"array: {array}\n" if array else "")
        + extra
    )


def test_shards_writing_into_shared_subfolders_keep_every_file(workspace: FakeWorkspace) -> None:
    spec = module(
        workspace,
        'i=$CONTAINEREXEC_SHARD_INDEX; mkdir -p "$1/kept" "$1/stats";'
        ' echo $i > "$1/kept/$i"; echo "{}" > "$1/stats/$i.json"',
        array="{range: 7, max_parallel: 3}",
    )
    workspace.engine.script = lambda inv, n: Outcome(
        files={
            f"out/kept/{inv.shard_index}": f"{inv.shard_index}\n".encode(),
            f"out/stats/{inv.shard_index}.json": b"{}\n",
        }
    )
    out = workspace.root / "out"
    _, _, result = workspace.run(spec, outputs={"out": str(out)})
    assert run_status(result.record) == 0
    assert files_under(out) == sorted(
        [f"kept/{i}" for i in range(7)] + [f"stats/{i}.json" for i in range(7)]
    )


def test_a_path_written_by_two_shards_fails_the_later_one(workspace: FakeWorkspace) -> None:
    spec = module(
        workspace,
        f'echo {IDX} > "$1/summary.txt"; echo own > "$1/own-{IDX}"',
        array="{range: 3, max_parallel: 1}",
        extra="retries: {max_attempts: 3, backoff: {initial: 0.1}}\n",
    )
    workspace.engine.script = lambda inv, n: Outcome(
        files={
            "out/summary.txt": f"{inv.shard_index}\n".encode(),
            f"out/own-{inv.shard_index}": b"own\n",
        }
    )
    done = workspace.cli("run", str(spec), "-o", "out=out")
    assert done.returncode == 1, done.stderr
    shards = workspace.shards()
    assert [s.state for s in shards.values()] == ["succeeded", "failed", "failed"]
    for s in (shards[1], shards[2]):
        assert s.failure == "output_collision"
        assert len(s.attempts) == 1  # never retried
        assert f"{workspace.root / 'out' / 'summary.txt'}" in s.message
        assert "shard 0" in s.message
    assert "output_collision" in done.stderr or "already written by shard 0" in done.stderr
    # Nothing partial: the failed shards' own files were not committed either.
    assert files_under(workspace.root / "out") == ["own-0", "summary.txt"]
    assert (workspace.root / "out" / "summary.txt").read_text() == "0\n"
    again = workspace.cli("run", str(spec), "--resume", workspace.run_id())
    assert again.returncode == 1, again.stderr
    assert [s.failure for s in workspace.shards().values()] == [
        None,
        "output_collision",
        "output_collision",
    ]


def test_a_shard_run_again_recommits_its_own_files(workspace: FakeWorkspace) -> None:
    spec = module(
        workspace,
        f'mkdir -p "$1/kept"; date +%s%N > "$1/kept/{IDX}"',
        array="{range: 2}",
    )
    # As `date` would, every container writes something new: here, its attempt number.
    workspace.engine.script = lambda inv, n: Outcome(
        files={f"out/kept/{inv.shard_index}": f"{n}\n".encode()}
    )
    out = workspace.root / "out"
    _, _, result = workspace.run(spec, outputs={"out": str(out)})
    assert run_status(result.record) == 0
    before = (out / "kept" / "1").read_text()
    shard = Executor(workspace.engine, workspace.store).work(result.record.run_id, 1)
    assert shard.state == "succeeded", shard.message
    assert files_under(out) == ["kept/0", "kept/1"]
    assert (out / "kept" / "1").read_text() != before  # its own file, committed again


def test_a_new_run_into_a_non_empty_folder_is_refused_before_any_container(
    workspace: FakeWorkspace,
) -> None:
    spec = module(workspace, 'echo new > "$1/new.txt"')
    workspace.folder("out", {"old.txt": "old"})
    done = workspace.cli("run", str(spec), "-o", "out=out")
    assert done.returncode == 2, done.stderr
    assert "output 'out'" in done.stderr and str(workspace.root / "out") in done.stderr
    assert "--overwrite" in done.stderr and "-o out=" in done.stderr
    assert "Traceback" not in done.stderr
    assert workspace.store.ids() == []  # no run, so no container
    file_spec = workspace.spec(
        "name: one\noutputs: {res: {type: file}}\ncommand: [bash, -c, 'echo x > $0', "
        "'${{outputs.res}}']\n",
        name="one.yaml",
    )
    (workspace.root / "res.txt").write_text("old")
    done = workspace.cli("run", str(file_spec), "-o", "res=res.txt")
    assert done.returncode == 2 and "a file that exists" in done.stderr, done.stderr
    assert (workspace.root / "res.txt").read_text() == "old"
    assert workspace.engine.created == []


def test_overwrite_removes_the_old_content_only_when_the_run_commits(
    workspace: FakeWorkspace,
) -> None:
    flags = workspace.folder("flags")
    spec = workspace.spec(
        "name: ow\ninputs: {flags: {type: directory}}\noutputs: {out: {type: directory}}\n"
        "command: [bash, -c, 'test -e $0/ok || exit 3; echo new > $1/new.txt',"
        " '${{inputs.flags}}', '${{outputs.out}}']\n"
    )

    def needs_ok(inv: Invocation, n: int) -> Outcome:
        if not (flags / "ok").exists():
            return Outcome(exit_code=3, files={})
        return Outcome(files={"out/new.txt": b"new\n"})

    workspace.engine.script = needs_ok
    workspace.folder("out", {"old.txt": "old"})
    failed = workspace.cli("run", str(spec), "-i", f"flags={flags}", "-o", "out=out", "--overwrite")
    assert failed.returncode == 3, failed.stderr
    assert files_under(workspace.root / "out") == ["old.txt"]  # nothing committed: kept
    (flags / "ok").write_text("")
    # The flag file the shard waits for is new in its input: accepted as a change.
    done = workspace.cli("run", str(spec), "--resume", workspace.run_id(), "--accept-input-changes")
    assert done.returncode == 0, done.stderr
    assert files_under(workspace.root / "out") == ["new.txt"]


WRITER = f"""\
name: writer
environment: {{image: '{BASE_IMAGE}', pull: never}}
outputs: {{out: {{type: directory}}}}
command: [bash, -c, 'echo data > $0/data.txt', '${{{{outputs.out}}}}']
"""
ONE_JOB = """\
name: onejob
outputs: {result: "${{jobs.w.outputs.out}}"}
jobs: {w: {module: writer.yaml}}
"""


def pipeline(workspace: FakeWorkspace, out: Path, **options: Any) -> PipelineResult:
    """ONE_JOB: its writer puts data.txt in the pipeline's output `result`, at `out`."""
    (workspace.root / "writer.yaml").write_text(WRITER)
    (workspace.root / "onejob.yaml").write_text(ONE_JOB)
    workspace.engine.script = lambda inv, n: Outcome(files={"out/data.txt": b"data\n"})
    orch = Orchestrator(workspace.engine, RunStore(workspace.runs_dir), **options)
    return orch.run(check_pipeline(workspace.root / "onejob.yaml"), {}, {"result": str(out)})


def test_a_pipeline_refuses_a_non_empty_place_unless_overwrite(workspace: FakeWorkspace) -> None:
    place = workspace.folder("place", {"old.txt": "old"})
    with pytest.raises(UsageError, match="--overwrite") as info:
        pipeline(workspace, place)
    assert "place" in str(info.value) and workspace.store.ids() == []
    done = pipeline(workspace, place, overwrite=True)
    assert pipeline_status(done.record) == 0
    assert files_under(place) == ["data.txt"]
