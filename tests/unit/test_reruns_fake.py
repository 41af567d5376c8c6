"""Issue 22 item 9 and issue 25 item 6: the same command run again over outputs containerexec
delivered replaces them (an unchanged rerun is a cache hit: no container), while content it
did not deliver, or edited since, is refused naming the path and --overwrite. The ledger and
the refusal are ours, so tests/fakes.FakeEngine plays the containers; two real processes
racing for one place are tests/engine/test_reruns.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import Outcome
from helpers import files_under

from containerexec.errors import OutputLocked, RunLocked
from containerexec.store.deliveries import Deliveries
from containerexec.store.tree import RunStore


def module(ws: FakeWorkspace, *, array: str = "{range: 3}") -> Path:
    """An array whose shard K writes `K.txt` (and `sub/K.txt`) into its output folder."""
    return ws.spec(
        "name: outs\n"
        "outputs: {out: {type: directory}}\n"
        "command: [bash, -c, 'echo x > $0/$CONTAINEREXEC_SHARD_INDEX.txt', "
        "'${{outputs.out}}']\n"
        f"array: {array}\n"
    )


def writes(ws: FakeWorkspace, text: bytes = b"x\n") -> None:
    ws.engine.script = lambda inv, n: Outcome(
        files={f"out/{inv.shard_index}.txt": text, f"out/sub/{inv.shard_index}.txt": text}
    )


def run_id(done: object) -> str:
    return str(done.stdout).strip().splitlines()[-1]  # type: ignore[attr-defined]


def test_the_same_command_again_replaces_what_it_delivered_and_is_a_cache_hit(
    workspace: FakeWorkspace,
) -> None:
    spec = module(workspace)
    writes(workspace)
    first = workspace.cli("run", str(spec), "-o", "out=out")
    assert first.returncode == 0, first.stderr
    assert len(workspace.engine.created) == 3
    again = workspace.cli("run", str(spec), "-o", "out=out")
    assert again.returncode == 0, again.stderr
    assert len(workspace.engine.created) == 3  # no container: every shard came from the cache
    second = run_id(again)
    assert second != run_id(first)
    assert all(s.cached for s in workspace.store.load_shards(second).values())
    out = workspace.root / "out"
    assert files_under(out) == ["0.txt", "1.txt", "2.txt", "sub/0.txt", "sub/1.txt", "sub/2.txt"]
    owner, known = Deliveries(workspace.store.deliveries).read(out)
    assert owner == second and set(known) >= {"", "0.txt", "sub", "sub/2.txt"}
    # A rerun that runs again (no cache) replaces the files too, and a third run still may.
    writes(workspace, b"new\n")
    fresh = workspace.cli("run", str(spec), "--no-cache", "-o", "out=out")
    assert fresh.returncode == 0, fresh.stderr
    assert len(workspace.engine.created) == 6
    assert (out / "1.txt").read_text() == "new\n"
    assert workspace.cli("run", str(spec), "-o", "out=out").returncode == 0


def test_a_rerun_refuses_a_foreign_file_an_edited_file_and_a_folder_from_elsewhere(
    workspace: FakeWorkspace,
) -> None:
    spec = module(workspace)
    writes(workspace)
    assert workspace.cli("run", str(spec), "-o", "out=out").returncode == 0
    out = workspace.root / "out"
    first = Deliveries(workspace.store.deliveries).read(out)[0]

    (out / "sub" / "notes.md").write_text("mine")
    refused = workspace.cli("run", str(spec), "-o", "out=out")
    assert refused.returncode == 2, refused.stderr
    assert f"'{out / 'sub' / 'notes.md'}' was not written by containerexec" in refused.stderr
    assert "--overwrite" in refused.stderr and "Traceback" not in refused.stderr
    (out / "sub" / "notes.md").unlink()

    (out / "1.txt").write_text("x\n")  # same size and text: still an edit
    refused = workspace.cli("run", str(spec), "-o", "out=out")
    assert refused.returncode == 2
    assert f"'{out / '1.txt'}' changed since run {first} wrote it" in refused.stderr
    assert len(workspace.engine.created) == 3
    assert (out / "1.txt").read_text() == "x\n"  # nothing was touched

    # --overwrite still replaces it all, and the place is containerexec's again.
    assert workspace.cli("run", str(spec), "--overwrite", "-o", "out=out").returncode == 0
    assert workspace.cli("run", str(spec), "-o", "out=out").returncode == 0

    # The same folder seen from another runs folder: nothing vouches for it.
    elsewhere = str(workspace.root / "elsewhere")
    other = workspace.cli("--runs-dir", elsewhere, "run", str(spec), "-o", "out=out")
    assert other.returncode == 2 and "was not written by containerexec" in other.stderr


def test_a_file_output_delivered_is_replaced_and_an_edited_one_refused(
    workspace: FakeWorkspace,
) -> None:
    spec = workspace.spec(
        "name: one\noutputs: {res: {type: file}}\n"
        "command: [bash, -c, 'echo x > $0', '${{outputs.res}}']\n",
        name="one.yaml",
    )
    assert workspace.cli("run", str(spec), "-o", "res=res.txt").returncode == 0
    again = workspace.cli("run", str(spec), "-o", "res=res.txt")
    assert again.returncode == 0 and len(workspace.engine.created) == 1
    assert "the outputs came from the cache" in again.stderr and "--no-cache" in again.stderr
    with (workspace.root / "res.txt").open("a") as f:
        f.write("more")
    refused = workspace.cli("run", str(spec), "-o", "res=res.txt")
    assert refused.returncode == 2
    assert "a file that exists and changed since run" in refused.stderr


def test_a_place_held_by_a_running_run_is_refused_at_once_naming_it_and_its_process(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "runs")
    deliveries = Deliveries(store.deliveries)
    place = str(tmp_path / "out")
    with deliveries.lock("out", place, "wc-1"):
        try:
            deliveries.lock("out", place, "wc-2").__enter__()
        except OutputLocked as exc:
            refused = exc
        assert "run 'wc-1'" in str(refused) and f"process {os.getpid()}" in str(refused)
        assert f"output 'out' -> '{place}'" in str(refused) and refused.pid == os.getpid()
        # A resume of the run that holds it: that run is in progress, as today's message says.
        try:
            deliveries.lock("out", place, "wc-1").__enter__()
        except RunLocked as exc:
            assert not isinstance(exc, OutputLocked) and "run 'wc-1' is in progress" in str(exc)
    with deliveries.lock("out", place, "wc-2"):  # let go with its holder
        pass


def test_an_unchanged_pipeline_rerun_to_the_same_places_is_served_by_the_cache(
    workspace: FakeWorkspace,
) -> None:
    module_spec = module(workspace, array="{range: 2}")
    writes(workspace)
    pipe = workspace.root / "pipe.yaml"
    pipe.write_text(
        f"name: p\njobs:\n  a: {{module: {module_spec.name}}}\n"
        "outputs: {result: '${{jobs.a.outputs.out}}'}\n"
    )
    first = workspace.cli("pipeline", "run", str(pipe), "-o", "result=res")
    assert first.returncode == 0, first.stderr
    made = len(workspace.engine.created)
    again = workspace.cli("pipeline", "run", str(pipe), "-o", "result=res")
    assert again.returncode == 0, again.stderr
    assert len(workspace.engine.created) == made
    record = json.loads((workspace.store.pipeline_dir(run_id(again)) / "pipeline.json").read_text())
    assert record["jobs"]["a"]["cached"] is True and record["outputs_placed"] == ["result"]
    (workspace.root / "res" / "0.txt").write_text("edited")
    refused = workspace.cli("pipeline", "run", str(pipe), "-o", "result=res")
    assert refused.returncode == 2 and "changed since run" in refused.stderr
