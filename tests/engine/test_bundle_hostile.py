"""Bundles a sender edited, replayed on the real engine: every hostile member, lying
manifest, gzip bomb, cut file and foreign image is refused with exit 2 and one line,
nothing is written outside the replay's folder, and no tag on the engine moves. And the
README's per-file glob shape (`${{inputs.data}}/${{shard.value}}`) replays from a bundle
on a machine that has neither the data nor the image, for a run and for a pipeline job."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from helpers import BASE_IMAGE
from unit.test_bundle_reader import Zeros

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
    with DockerEngine.from_env() as engine:
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


# Edits a sender could make. Each takes the bundle's members and bundle.json's file list.

Members = list[tuple[tarfile.TarInfo, bytes]]
Edit = Callable[[Members, list[dict[str, object]], Path], None]
B = "inputs/data/b.txt"


def _find(items: Members, name: str) -> int:
    return next(n for n, (m, _) in enumerate(items) if m.name == name)


def _retype(kind: bytes, link: str = "") -> Edit:
    def edit(items: Members, files: list[dict[str, object]], outside: Path) -> None:
        m, _ = items[_find(items, B)]
        m.type, m.size = kind, 0
        m.linkname = link.format(outside=outside)
        if kind == tarfile.CHRTYPE:
            m.devmajor, m.devminor = 1, 3
        items[_find(items, B)] = (m, b"")

    return edit


def _rename(name: str) -> Edit:
    def edit(items: Members, files: list[dict[str, object]], outside: Path) -> None:
        m, _ = items[_find(items, B)]
        m.name = name.format(outside=outside)

    return edit


def _lie(field: str, value: object) -> Edit:
    def edit(items: Members, files: list[dict[str, object]], outside: Path) -> None:
        for f in files:
            if f["path"] == B:
                f[field] = value

    return edit


HOSTILE: dict[str, tuple[Edit, str]] = {
    "dotdot": (_rename("inputs/data/../../../../x"), "is not a relative path"),
    "parent": (_rename("../x"), "'../x'"),
    "absolute": (_rename("{outside}/abs.txt"), "abs.txt"),
    "symlink out": (_retype(tarfile.SYMTYPE, "{outside}/target"), "is a symbolic link"),
    "hard link out": (_retype(tarfile.LNKTYPE, "{outside}/target"), "is a hard link"),
    "fifo": (_retype(tarfile.FIFOTYPE), "is a FIFO"),
    "char device": (_retype(tarfile.CHRTYPE), "is a character device"),
    "size lie": (_lie("size", 6), "bundle.json says 6"),
    "sha256 lie": (_lie("sha256", "0" * 64), "bundle.json says " + "0" * 64),
}


def _edited(src: Path, dest: Path, edit: Edit, outside: Path) -> Path:
    with tarfile.open(src) as tar:
        items = [
            (m, (tar.extractfile(m) or io.BytesIO()).read() if m.isfile() else b"") for m in tar
        ]
    n = _find(items, "bundle.json")
    doc = json.loads(items[n][1])
    edit(items, doc.get("files") or [], outside)  # none in a bundle of an older version
    data = json.dumps(doc).encode()
    items[n][0].size = len(data)
    items[n] = (items[n][0], data)
    gz = dest.name.endswith(".gz")
    with tarfile.open(dest, "w:gz" if gz else "w", **({"compresslevel": 1} if gz else {})) as tar:
        for m, d in items:
            tar.addfile(m, io.BytesIO(d) if m.isfile() else None)
    return dest


def _refused(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines  # one line, the last
    err = errors[0]
    for needle in needles:
        assert needle in err, err
    return err


def _nothing_written(root: Path, outside: Path) -> None:
    assert not any(outside.iterdir()), list(outside.iterdir())
    bundles = root / "bundles"
    assert not bundles.exists() or not [p for p in bundles.rglob("*") if p.is_file()]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_member_or_a_lying_manifest_is_refused_in_one_line(
    globbed: Globbed, tmp_path: Path, case: str
) -> None:
    edit, said = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = _edited(globbed.bundle, tmp_path / "edited.tar", edit, outside)
    result = cx(tmp_path / "here", "repro", str(bundle))
    _refused(result, said, str(bundle))
    _nothing_written(tmp_path / "here", outside)


def test_a_small_gzip_that_inflates_to_400_mib_is_stopped_at_the_cap(
    globbed: Globbed, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bomb = _bomb(globbed, tmp_path / "bomb.tar.gz", honest=False)  # bundle.json says 13 bytes
    print(f"bomb: {bomb.stat().st_size / (1 << 20):.2f} MiB gzipped, 400 MiB inflated")
    assert bomb.stat().st_size < 2 << 20
    _refused(cx(tmp_path / "here", "repro", str(bomb)), B, "bundle.json says 13")
    _nothing_written(tmp_path / "here", outside)
    # Honest about its 400 MiB, it is still past the cap (20 times the bundle, at least 64M).
    honest = _bomb(globbed, tmp_path / "honest.tar.gz", honest=True)
    _refused(cx(tmp_path / "here", "repro", str(honest)), B, "--max-unpacked")
    _nothing_written(tmp_path / "here", outside)


def _bomb(globbed: Globbed, dest: Path, *, honest: bool) -> Path:
    """The bundle without its image, b.txt swapped for 400 MiB of zeros."""
    size = 400 << 20
    with tarfile.open(globbed.bundle) as tar:
        items = [
            (m, (tar.extractfile(m) or io.BytesIO()).read() if m.isfile() else b"")
            for m in tar
            if not m.name.startswith("images/")
        ]
    if honest:
        h = hashlib.sha256()
        zeros = Zeros(size)
        while chunk := zeros.read(1 << 20):
            h.update(chunk)
        n = _find(items, "bundle.json")
        doc = json.loads(items[n][1])
        next(f for f in doc["files"] if f["path"] == B).update(size=size, sha256=h.hexdigest())
        items[n] = (items[n][0], json.dumps(doc).encode())
        items[n][0].size = len(items[n][1])
    with tarfile.open(dest, "w:gz", compresslevel=9) as out:
        for m, d in items:
            if m.name == B:
                m.size = size
                out.addfile(m, Zeros(size))
            else:
                out.addfile(m, io.BytesIO(d) if m.isfile() else None)
    return dest


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_bundle_cut_in_the_middle_of_a_member_is_refused_naming_it(
    globbed: Globbed, tmp_path: Path, suffix: str
) -> None:
    whole = tmp_path / f"whole{suffix}"
    _edited(globbed.bundle, whole, lambda items, files, outside: None, tmp_path)
    with tarfile.open(whole) as tar:
        image = next(m for m in tar.getmembers() if m.name.startswith("images/"))
    raw = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    # Halfway into the image's data (a .tar.gz: about there in the compressed stream).
    at = image.offset_data + image.size // 2
    cut.write_bytes(raw[: at if suffix == ".tar" else len(raw) // 2])
    err = _refused(cx(tmp_path / "here", "repro", str(cut)), str(cut), "cut short")
    assert "member '" in err


def test_an_image_of_another_id_is_refused_with_both_ids_and_nothing_is_loaded(
    engine: DockerEngine, globbed: Globbed, test_session_label: dict[str, str], tmp_path: Path
) -> None:
    ctx = tmp_path / "other"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL cx.other={uuid.uuid4().hex}\n")
    other = engine.build(
        str(ctx),
        dockerfile="Dockerfile",
        tag=f"cx-other:{uuid.uuid4().hex[:8]}",
        buildargs={},
        target=None,
        labels=test_session_label,
    )
    engine.save_image(other.id, tmp_path / "other.tar")
    engine.remove_image(other.id)
    swapped = _swap_image(globbed, tmp_path, (tmp_path / "other.tar").read_bytes())
    if engine.inspect_image(globbed.image_id) is not None:
        engine.remove_image(globbed.image_id)
    _refused(cx(tmp_path / "here", "repro", str(swapped)), other.id, globbed.image_id)
    assert engine.inspect_image(other.id) is None
    assert engine.inspect_image(globbed.image_id) is None


def test_a_load_never_moves_an_existing_tag(
    engine: DockerEngine, globbed: Globbed, tmp_path: Path
) -> None:
    victim = f"cx-victim-{uuid.uuid4().hex[:8]}"
    base = engine.inspect_image(BASE_IMAGE)
    assert base is not None
    engine.tag(base.id, victim, "latest")
    try:
        with tarfile.open(globbed.bundle) as tar:
            name = next(n for n in tar.getnames() if n.startswith("images/"))
            image = (tar.extractfile(name) or io.BytesIO()).read()
        retagged = _swap_image(globbed, tmp_path, _with_repo_tags(image, [f"{victim}:latest"]))
        if engine.inspect_image(globbed.image_id) is not None:
            engine.remove_image(globbed.image_id)
        result = cx(tmp_path / "here", "repro", str(retagged))
        assert result.exit_code == 3, result.output
        still = engine.inspect_image(f"{victim}:latest")
        assert still is not None and still.id == base.id
    finally:
        engine.remove_image(f"{victim}:latest")


def test_the_print_script_loads_the_checked_image_and_moves_no_tag(
    engine: DockerEngine, globbed: Globbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = f"cx-victim-{uuid.uuid4().hex[:8]}"
    base = engine.inspect_image(BASE_IMAGE)
    assert base is not None
    engine.tag(base.id, victim, "latest")
    try:
        with tarfile.open(globbed.bundle) as tar:
            name = next(n for n in tar.getnames() if n.startswith("images/"))
            image = (tar.extractfile(name) or io.BytesIO()).read()
        retagged = _swap_image(globbed, tmp_path, _with_repo_tags(image, [f"{victim}:latest"]))
        monkeypatch.chdir(tmp_path)  # --print writes the checked image here
        printed = cx(tmp_path / "here", "repro", str(retagged), "--print")
        assert printed.exit_code == 0, printed.output
        (tmp_path / "repro.sh").write_text(printed.stdout)
        assert "docker load -i" in printed.stdout and "tar -xOf" not in printed.stdout
        if engine.inspect_image(globbed.image_id) is not None:
            engine.remove_image(globbed.image_id)
        ran = subprocess.run(["sh", "repro.sh"], cwd=tmp_path, capture_output=True, text=True)
        assert ran.returncode == 3, (ran.stdout, ran.stderr)
        still = engine.inspect_image(f"{victim}:latest")
        assert still is not None and still.id == base.id
    finally:
        engine.remove_image(f"{victim}:latest")


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


def _swap_image(globbed: Globbed, tmp_path: Path, image: bytes) -> Path:
    """The bundle with its image tar's bytes replaced and listed, as a careful sender would."""

    def edit(items: Members, files: list[dict[str, object]], outside: Path) -> None:
        n = next(n for n, (m, _) in enumerate(items) if m.name.startswith("images/"))
        m, _ = items[n]
        m.size = len(image)
        items[n] = (m, image)
        for entry in (f for f in files if f["path"] == m.name):
            entry.update(size=len(image), sha256=hashlib.sha256(image).hexdigest())

    return _edited(globbed.bundle, tmp_path / "swapped.tar", edit, tmp_path)
