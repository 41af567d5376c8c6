"""Issue 10, items 8 and 11 on the real engine: the cache keys a Python module's code, and
resume says when the module's build folder changed since the run started. Glob shards' cache
keys and resume's input checks are unit tests: tests/unit/test_cache_truth_fake.py."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

from helpers import BASE_IMAGE, job_containers
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.pipelines.record import PipelineResult
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
    assert job_containers(store, first) == {"shout": 1}
    same = run("b.txt")
    assert job_containers(store, same) == {"shout": 0} and same.record.jobs["shout"].cached
    code.write_text(PY_MODULE.replace(".upper()", ".lower() + '!'"))
    edited = run("c.txt")
    assert job_containers(store, edited) == {"shout": 1}
    assert not edited.record.jobs["shout"].cached
    assert (tmp_path / "c.txt").read_text() == "hello!"


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
