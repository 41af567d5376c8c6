"""Bundles a sender edited, replayed on the real engine: a load never moves a tag on the
engine, from `repro` or from its --print script (the refusals of hostile members, lying
manifests, gzip bombs, cut files and foreign images need no engine: they are in
tests/unit/test_bundle_refusals.py). And the README's per-file glob shape
(`${{inputs.data}}/${{shard.value}}`) replays from a bundle on a machine that has neither
the data nor the image, for a run and for a pipeline job."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import BASE_IMAGE, local_engine
from unit.test_bundle_refusals import swap_image

from containerexec.engine.docker import DockerEngine
from containerexec.model.pipelinecheck import check_pipeline
from containerexec.model.spec import load_spec
from containerexec.pipelines.orchestrator import Orchestrator
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore
from engine.test_bundle import cx

JOB = """\
import sys
path = sys.argv[1]
text = open(path).read()
if "bad" in text:
    print(f"fatal: {path} is bad", file=sys.stderr, flush=True)
    sys.exit(3)
"""
SPEC = """\
name: cx-hostile
environment: {{image: "{image}"}}
inputs: {{data: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [python3, /app/job.py, "${{{{inputs.data}}}}/${{{{shard.value}}}}"]
array: {{glob: {{input: data, pattern: "*.txt"}}}}
"""
PIPELINE = """\
name: cx-hostile-pipeline
inputs: {data: {type: directory}}
jobs:
  check: {module: job.yaml, inputs: {data: "${{inputs.data}}"}}
"""


@dataclass(frozen=True)
class Globbed:
    tmp: Path
    data: Path
    store: RunStore
    run_id: str
    image_id: str
    bundle: Path  # the failing shard's bundle, with --with-inputs --with-image
    spec: Path


@pytest.fixture(scope="module")
def globbed(
    test_session_label: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Globbed:
    tmp = tmp_path_factory.mktemp("hostile")
    ctx = tmp / "image"
    ctx.mkdir()
    (ctx / "job.py").write_text(JOB)
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY job.py /app/job.py\n")
    tag = f"cx-hostile:{uuid.uuid4().hex[:10]}"
    data = tmp / "data"
    data.mkdir()
    for name, text in {"a": "fine\n", "b": "a bad record\n", "c": "fine too\n"}.items():
        (data / f"{name}.txt").write_text(text)
    spec = tmp / "job.yaml"
    spec.write_text(SPEC.format(image=tag))
    store = RunStore(tmp / "build-machine")
    with local_engine() as engine:
        image = engine.build(
            str(ctx),
            dockerfile="Dockerfile",
            tag=tag,
            buildargs={},
            target=None,
            labels=test_session_label,
        )
        result = (
            Executor(engine, store)
            .start(
                load_spec(spec),
                {"data": str(data)},
                {},
                spec_path=spec,
                options=RunOptions(labels=test_session_label),
            )
            .wait()
        )
    assert [s.index for s in result.failed] == [1], result
    run_id = result.record.run_id
    bundle = tmp / "failed.tar"
    made = cx(
        store.root,
        "runs",
        "export",
        run_id,
        "--bundle",
        str(bundle),
        "--with-inputs",
        "--with-image",
    )
    assert made.exit_code == 0, made.output
    return Globbed(tmp, data, store, run_id, image.id, bundle, spec)


def test_a_pipeline_jobs_glob_shard_replays_from_its_bundle_on_an_empty_store(
    engine: DockerEngine, globbed: Globbed, test_session_label: dict[str, str], tmp_path: Path
) -> None:
    shutil.copy(globbed.spec, tmp_path / "job.yaml")
    (tmp_path / "p.yaml").write_text(PIPELINE)
    data = tmp_path / "data"
    shutil.copytree(globbed.data, data)
    store = RunStore(tmp_path / "runs")
    ran = Orchestrator(engine, store, labels=test_session_label).run(
        check_pipeline(tmp_path / "p.yaml"), {"data": str(data)}, {}
    )
    assert ran.failed == ["check"], ran.record
    bundle = tmp_path / "pipeline.tar.gz"
    made = cx(
        store.root,
        "runs",
        "export",
        ran.record.id,
        "--bundle",
        str(bundle),
        "--with-inputs",  # not --with-image: the image is here, the data is what is not
        "--job",
        "check",
    )
    assert made.exit_code == 0, made.output
    shutil.rmtree(data)
    result = cx(tmp_path / "empty", "repro", str(bundle), "--job", "check")
    assert result.exit_code == 3, result.output
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"


def test_a_glob_shards_own_file_replays_on_a_machine_without_the_data_or_the_image(
    engine: DockerEngine, globbed: Globbed, tmp_path: Path
) -> None:
    with tarfile.open(globbed.bundle) as tar:
        assert "inputs/data/b.txt" in tar.getnames()  # not b.txt's bytes as inputs/data
    engine.remove_image(globbed.image_id)
    moved = globbed.tmp / "data-gone"
    globbed.data.rename(moved)
    try:
        result = cx(tmp_path / "laptop", "repro", str(globbed.bundle))
    finally:
        moved.rename(globbed.data)
    assert result.exit_code == 3, result.output
    assert result.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
    assert "from the bundle, ID verified" in result.stderr
    (unpacked,) = (tmp_path / "laptop" / "bundles").glob(f"{globbed.run_id}-*/inputs/data")
    assert sorted(p.name for p in unpacked.iterdir()) == ["b.txt"]


@dataclass(frozen=True)
class Victim:
    """A tag of this engine, and a bundle whose image tar claims that tag."""

    tag: str
    image_id: str
    bundle: Path


@pytest.fixture
def victim(engine: DockerEngine, globbed: Globbed, tmp_path: Path) -> Iterator[Victim]:
    tag = f"cx-victim-{uuid.uuid4().hex[:8]}:latest"
    base = engine.inspect_image(BASE_IMAGE)
    assert base is not None
    engine.tag(base.id, *tag.split(":"))
    try:
        with tarfile.open(globbed.bundle) as tar:
            name = next(n for n in tar.getnames() if n.startswith("images/"))
            image = (tar.extractfile(name) or io.BytesIO()).read()
        retagged = swap_image(globbed.bundle, tmp_path, _with_repo_tags(image, [tag]))
        if engine.inspect_image(globbed.image_id) is not None:
            engine.remove_image(globbed.image_id)
        yield Victim(tag, base.id, retagged)
    finally:
        engine.remove_image(tag)


def test_a_load_never_moves_an_existing_tag(
    engine: DockerEngine, victim: Victim, tmp_path: Path
) -> None:
    result = cx(tmp_path / "here", "repro", str(victim.bundle))
    assert result.exit_code == 3, result.output
    still = engine.inspect_image(victim.tag)
    assert still is not None and still.id == victim.image_id


def test_the_print_script_loads_the_checked_image_and_moves_no_tag(
    engine: DockerEngine, victim: Victim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # --print writes the checked image here
    printed = cx(tmp_path / "here", "repro", str(victim.bundle), "--print")
    assert printed.exit_code == 0, printed.output
    (tmp_path / "repro.sh").write_text(printed.stdout)
    assert "docker load -i" in printed.stdout and "tar -xOf" not in printed.stdout
    ran = subprocess.run(["sh", "repro.sh"], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 3, (ran.stdout, ran.stderr)
    still = engine.inspect_image(victim.tag)
    assert still is not None and still.id == victim.image_id


def _with_repo_tags(image: bytes, tags: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(image)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            data = (src.extractfile(m) or io.BytesIO()).read() if m.isfile() else b""
            if m.name == "manifest.json":
                doc = json.loads(data)
                doc[0]["RepoTags"] = tags
                data = json.dumps(doc).encode()
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return out.getvalue()
