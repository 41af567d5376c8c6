"""Issue 10, items 3-4: outputs let nothing of the host out (items 1-2, merging and never
mixing runs, are unit tests on the fake engine: tests/unit/test_outputs_fake.py).

Each test runs real containers; links, FIFOs, sockets and setuid bits are made
inside them, and outputs land on the same filesystem as the staging folder
(rename) or on a tmpfs (copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import BASE_IMAGE, files_under, local_engine
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.cli.status import pipeline_status, run_status
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.pipelines.record import PipelineResult
from containerexec.store.tree import RunStore

HOST_SECRET = Path("/etc/shadow")
IDX = "$CONTAINEREXEC_SHARD_INDEX"


def module(ws: Workspace, script: str, *, array: str = "", extra: str = "") -> Path:
    """A module whose shards run `script` in bash with $1 = the output folder."""
    return ws.spec(
        "name: outs\n"
        "outputs: {out: {type: directory}}\n"
        f"command: [bash, -c, {json.dumps(script)}, outs, '${{{{outputs.out}}}}']\n"
        + (f"array: {array}\n" if array else "")
        + extra
    )


def leaked(folder: Path, host_file: Path = HOST_SECRET) -> list[str]:
    """Entries under `folder` that read as `host_file` or lead outside `folder`."""
    secret = host_file.read_bytes()
    found = []
    for d, dirs, names in os.walk(folder):
        for name in [*dirs, *names]:
            path = Path(d, name)
            real = os.path.realpath(path)
            if not real.startswith(os.path.realpath(folder) + os.sep):
                found.append(f"{path} -> {real}")
            elif path.is_file() and path.read_bytes() == secret:
                found.append(str(path))
    return found


def run_into(workspace: Workspace, folder: Path, script: str) -> tuple[Path, int]:
    """Run a one-shard module writing `script`'s files to `folder`/out: (out, exit status)."""
    out = folder / "out"
    _, _, result = workspace.run(module(workspace, script), outputs={"out": str(out)})
    return out, run_status(result.record)


def place(workspace: Workspace, tmpfs: Path, where: str) -> Path:
    return workspace.root if where == "same-fs" else tmpfs


# -- 3. links and special files ---------------------------------------------------------------

LEAKS = 'echo data > "$1/data.txt"; ln -s /etc/shadow "$1/shadow"; ln -s /etc "$1/etc"'


@pytest.mark.parametrize("where", ["same-fs", "tmpfs"])
def test_links_out_of_the_output_fail_the_shard_and_copy_nothing(
    workspace: Workspace, tmpfs: Path, where: str
) -> None:
    out, status = run_into(workspace, place(workspace, tmpfs, where), LEAKS)
    assert status == 1
    shard = workspace.shards()[0]
    assert shard.failure == "unsafe_output" and len(shard.attempts) == 1
    assert "/outputs/out/" in shard.message and "link out of the output" in shard.message
    assert "'/etc" in shard.message
    assert not out.exists() or files_under(out) == []
    assert leaked(workspace.root) == [] and leaked(tmpfs) == []


@pytest.mark.parametrize("where", ["same-fs", "tmpfs"])
def test_links_inside_the_output_stay_links(workspace: Workspace, tmpfs: Path, where: str) -> None:
    out, status = run_into(
        workspace,
        place(workspace, tmpfs, where),
        'mkdir -p "$1/sub"; echo data > "$1/sub/data.txt"; ln -s sub/data.txt "$1/link";'
        ' ln -s ../link "$1/sub/up"; ln -s sub "$1/dirlink"',
    )
    assert status == 0, workspace.shards()[0].message
    assert os.readlink(out / "link") == "sub/data.txt"
    assert os.readlink(out / "sub" / "up") == "../link"
    assert (out / "dirlink").is_symlink() and (out / "sub" / "up").read_text() == "data\n"


@pytest.mark.parametrize(
    "script",
    [
        'mkfifo "$1/pipe"',
        'python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$1/sock"',
        'mkdir "$1/d"; cd "$1/d" && ln -s ../../.. esc',
    ],
    ids=["fifo", "socket", "dotdot"],
)
def test_special_files_and_escaping_links_are_refused(
    workspace: Workspace, tmpfs: Path, script: str
) -> None:
    out, status = run_into(workspace, tmpfs, f'echo data > "$1/data.txt"; {script}')
    assert status == 1
    shard = workspace.shards()[0]
    assert shard.failure == "unsafe_output", shard.message
    assert not out.exists()


def test_hard_links_to_files_outside_cannot_be_made(workspace: Workspace) -> None:
    secret = workspace.folder("in", {"secret.txt": "host secret"})
    spec = workspace.spec(
        "name: hard\ninputs: {d: {type: directory}}\noutputs: {out: {type: directory}}\n"
        "command: [bash, -c, 'ln $0/secret.txt $1/hard; echo $? > $1/status;"
        " ln /etc/passwd $1/passwd; echo $? >> $1/status', '${{inputs.d}}', '${{outputs.out}}']\n"
    )
    out = workspace.root / "out"
    _, _, result = workspace.run(spec, {"d": str(secret)}, {"out": str(out)})
    assert run_status(result.record) == 0
    assert files_under(out) == ["status"]  # both links failed inside the container
    assert "0" not in (out / "status").read_text().split()


# -- 4. setuid, setgid and sticky bits -------------------------------------------------------


@pytest.mark.parametrize("where", ["same-fs", "tmpfs"])
def test_setuid_setgid_and_sticky_bits_are_cleared(
    workspace: Workspace, tmpfs: Path, where: str
) -> None:
    out, status = run_into(
        workspace,
        place(workspace, tmpfs, where),
        'echo x > "$1/suid"; chmod 4755 "$1/suid"; echo x > "$1/sgid"; chmod 2755 "$1/sgid";'
        ' mkdir "$1/d"; chmod 3777 "$1/d"; echo x > "$1/d/f"; chmod 6711 "$1/d/f"',
    )
    assert status == 0
    modes = {p: stat.S_IMODE(os.lstat(out / p).st_mode) for p in ("suid", "sgid", "d", "d/f")}
    assert modes == {"suid": 0o755, "sgid": 0o755, "d": 0o777, "d/f": 0o711}


# -- through a pipeline, and through the cache ------------------------------------------------

LINKER = f"""\
name: linker
environment: {{image: '{BASE_IMAGE}', pull: never}}
inputs: {{mode: {{type: string}}}}
outputs: {{out: {{type: directory}}}}
command: [bash, -c, 'echo data > $1/data.txt;
          if [ $0 = leak ]; then ln -s /etc/shadow $1/shadow; fi;
          if [ $0 = inner ]; then ln -s data.txt $1/link; fi', '${{{{inputs.mode}}}}',
          '${{{{outputs.out}}}}']
"""
LINKS = """\
name: links
inputs: {mode: {type: string}}
outputs: {result: "${{jobs.l.outputs.out}}"}
jobs:
  l: {module: linker.yaml, inputs: {mode: "${{inputs.mode}}"}}
"""


def pipeline(
    workspace: Workspace, labels: dict[str, str], mode: str, out: Path, **options: Any
) -> PipelineResult:
    (workspace.root / "linker.yaml").write_text(textwrap.dedent(LINKER))
    (workspace.root / "links.yaml").write_text(LINKS)
    engine = local_engine()
    try:
        orch = Orchestrator(engine, RunStore(workspace.runs_dir), labels=labels, **options)
        plan = check_pipeline(workspace.root / "links.yaml")
        return orch.run(plan, {"mode": mode}, {"result": str(out)})
    finally:
        engine.api.close()


def test_a_pipeline_places_inner_links_as_links_and_refuses_outer_ones(
    workspace: Workspace, tmpfs: Path, test_session_label: dict[str, str]
) -> None:
    bad = pipeline(workspace, test_session_label, "leak", tmpfs / "leak")
    assert pipeline_status(bad.record) == 1
    assert "unsafe" in str(workspace.shards(bad.record.jobs["l"].run_id or "")[0].failure)
    assert not (tmpfs / "leak").exists()
    good = pipeline(workspace, test_session_label, "inner", tmpfs / "inner")
    assert pipeline_status(good.record) == 0
    assert os.readlink(tmpfs / "inner" / "link") == "data.txt"
    assert leaked(tmpfs) == [] and leaked(workspace.root) == []


def test_a_cache_hit_restores_links_as_links_and_never_reads_through_one(
    workspace: Workspace, tmpfs: Path, test_session_label: dict[str, str]
) -> None:
    first = pipeline(workspace, test_session_label, "inner", tmpfs / "a")
    assert pipeline_status(first.record) == 0
    second = pipeline(workspace, test_session_label, "inner", tmpfs / "b")
    assert second.record.jobs["l"].cached
    assert os.readlink(tmpfs / "b" / "link") == "data.txt"
    # An entry as the old cache wrote it: a link to a host file, hashed through the link.
    assert (
        pipeline_status(pipeline(workspace, test_session_label, "plain", tmpfs / "d").record) == 0
    )
    manifests = [
        m
        for m in (workspace.runs_dir / "cache").rglob("manifest.json")
        if "out/link" not in json.loads(m.read_text())["files"]
    ]
    assert len(manifests) == 1
    data = manifests[0].parent / "outputs" / "out" / "data.txt"
    data.unlink()
    data.symlink_to(HOST_SECRET)
    meta = json.loads(manifests[0].read_text())
    meta["files"]["out/data.txt"] = hashlib.sha256(HOST_SECRET.read_bytes()).hexdigest()
    manifests[0].write_text(json.dumps(meta))
    third = pipeline(workspace, test_session_label, "plain", tmpfs / "c")
    assert pipeline_status(third.record) == 0
    assert not third.record.jobs["l"].cached  # the damaged entry is a miss: the shard ran
    assert (tmpfs / "c" / "data.txt").read_text() == "data\n"
    assert leaked(tmpfs) == [] and leaked(workspace.root) == []
