"""Bundles a sender edited, given to `containerexec repro` through the CLI on a recording
fake engine: every hostile member, lying manifest, gzip bomb, cut file and foreign image
is refused with exit 2 and one line, and nothing is written outside the replay's folder
or loaded. Moved from tests/engine/test_bundle_hostile.py and test_bundle.py (with the
export refusals and `runs show` of a bundle): each ends before a container would start,
so the engine there only made the run.

The bundle is tests/unit/test_bundle_reader.good_bundle's (make_run's recorded run, a
synthetic `docker save` tar for its image) with b.txt holding the failing shard's
"a bad record\\n" (13 bytes) as on the engine; the real engine's bundle and its loads
stay in tests/engine/test_bundle_hostile.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from containerexec.cli import App, cli
from containerexec.store import manifests
from containerexec.store.records import FileEntry
from containerexec.store.tree import RunStore
from unit.test_bundle_reader import Good, Recording, Zeros, good_bundle, image_tar
from unit.test_repro_offline import RUN_ID, make_run

BAD = "a bad record\n"


def cx(runs: Path, *args: str, engine: Recording | None = None) -> Result:
    """`containerexec --runs-dir RUNS ARGS` in-process, its engine a Recording fake."""
    app = App(runs_dir=runs, engine_factory=lambda: engine or Recording(), sleep=lambda s: None)
    return CliRunner().invoke(cli, ["--runs-dir", str(runs), *args], obj=app)


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Good:
    """The failing shard's bundle, with its inputs and its image."""
    return good_bundle(tmp_path_factory.mktemp("sent"), b_txt=BAD)


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


def edited(src: Path, dest: Path, edit: Edit, outside: Path) -> Path:
    """`src` written again as `dest` (gzipped if it ends .gz) after `edit` of its members."""
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
    sent: Good, tmp_path: Path, case: str
) -> None:
    edit, said = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = edited(sent.path, tmp_path / "edited.tar", edit, outside)
    engine = Recording()
    result = cx(tmp_path / "here", "repro", str(bundle), engine=engine)
    _refused(result, said, str(bundle))
    _nothing_written(tmp_path / "here", outside)
    assert engine.loaded == [] and engine.containers_by_id == {}


def test_a_small_gzip_that_inflates_to_400_mib_is_stopped_at_the_cap(
    sent: Good, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bomb = _bomb(sent, tmp_path / "bomb.tar.gz", honest=False)  # bundle.json says 13 bytes
    print(f"bomb: {bomb.stat().st_size / (1 << 20):.2f} MiB gzipped, 400 MiB inflated")
    assert bomb.stat().st_size < 2 << 20
    _refused(cx(tmp_path / "here", "repro", str(bomb)), B, "bundle.json says 13")
    _nothing_written(tmp_path / "here", outside)
    # Honest about its 400 MiB, it is still past the cap (20 times the bundle, at least 64M).
    honest = _bomb(sent, tmp_path / "honest.tar.gz", honest=True)
    _refused(cx(tmp_path / "here", "repro", str(honest)), B, "--max-unpacked")
    _nothing_written(tmp_path / "here", outside)


def _bomb(sent: Good, dest: Path, *, honest: bool) -> Path:
    """The bundle without its image, b.txt swapped for 400 MiB of zeros."""
    size = 400 << 20
    with tarfile.open(sent.path) as tar:
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
    sent: Good, tmp_path: Path, suffix: str
) -> None:
    whole = tmp_path / f"whole{suffix}"
    edited(sent.path, whole, lambda items, files, outside: None, tmp_path)
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
    tmp_path: Path,
) -> None:
    sent = good_bundle(tmp_path / "sent")  # its inputs as recorded: the image is checked next
    other, other_id = image_tar(salt="another build")
    swapped = swap_image(sent.path, tmp_path, other)
    engine = Recording()
    _refused(cx(tmp_path / "here", "repro", str(swapped), engine=engine), other_id, sent.image_id)
    assert engine.inspect_image(other_id) is None
    assert engine.inspect_image(sent.image_id) is None
    assert engine.loaded == []


def swap_image(bundle: Path, tmp_path: Path, image: bytes) -> Path:
    """The bundle with its image tar's bytes replaced and listed, as a careful sender would."""

    def edit(items: Members, files: list[dict[str, object]], outside: Path) -> None:
        n = next(n for n, (m, _) in enumerate(items) if m.name.startswith("images/"))
        m, _ = items[n]
        m.size = len(image)
        items[n] = (m, image)
        for entry in (f for f in files if f["path"] == m.name):
            entry.update(size=len(image), sha256=hashlib.sha256(image).hexdigest())

    return edited(bundle, tmp_path / "swapped.tar", edit, tmp_path)


# From tests/engine/test_bundle.py: refusals of `runs export --bundle` and `repro --print`,
# and `runs show` of a bundle, which reads it with no engine.

FATAL = "fatal: record 17 of b.txt is bad"


def _failed_run(tmp_path: Path) -> RunStore:
    """make_run's run over the engine test's data: a, b and c, 28 bytes in all."""
    store, data = make_run(tmp_path)
    (data / "a.txt").write_text("fine\n")
    (data / "b.txt").write_text(BAD)
    (data / "c.txt").write_text("also fine\n")
    rec = store.load_run(RUN_ID)
    files = [FileEntry(path=p, size=n, sha256=h) for p, n, h in manifests.manifest(str(data))]
    store.write_run(rec.model_copy(update={"input_manifests": {"data": files}}))
    with store.log_path(RUN_ID, 1).open("a") as log:
        log.write(FATAL + "\n")  # the failed shard's last line, as the job printed it
    return store


def test_show_reads_a_bundle_shard_table_and_the_failed_log_tail(tmp_path: Path) -> None:
    store = _failed_run(tmp_path)
    bundle = tmp_path / "plain.tar.gz"
    assert cx(store.root, "runs", "export", RUN_ID, "--bundle", str(bundle)).exit_code == 0
    shown = cx(tmp_path / "elsewhere", "runs", "show", str(bundle))
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "not carried (pulled by digest)" in out and "not carried (give -i NAME=PATH)" in out
    assert f"run:      {RUN_ID}" in out
    assert "     1 failed         3" in out and "     0 succeeded      0" in out
    assert f"  {FATAL}" in out
    as_json = cx(tmp_path / "elsewhere", "runs", "export", RUN_ID, "-o", "-")
    assert as_json.exit_code != 0  # not in that runs dir: the file is the way


def test_inputs_over_the_limit_are_refused_with_their_size(tmp_path: Path) -> None:
    store = _failed_run(tmp_path)
    result = cx(
        store.root,
        "runs",
        "export",
        RUN_ID,
        "--bundle",
        str(tmp_path / "big.tar"),
        "--with-inputs",
        "--max-input-bytes",
        "10",
    )
    assert result.exit_code == 2
    assert "come to 0.0 MiB (data 0.0 MiB), over the limit" in result.stderr
    assert "--max-input-bytes 28" in result.stderr
    assert not (tmp_path / "big.tar").exists()


def test_print_refuses_naming_every_missing_input(tmp_path: Path) -> None:
    store = _failed_run(tmp_path)
    data = json.loads(cx(store.root, "runs", "export", RUN_ID, "-o", "-").stdout)
    for shard in data["shards"]:
        for m in shard["invocation"]["mounts"]:
            if m["kind"] == "input":
                m["source"] = str(tmp_path / "gone")
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = cx(tmp_path / "runs", "repro", str(edited), "--print")
    assert result.exit_code == 2
    assert "input 'data' of run" in result.stderr and "--inputs data=PATH" in result.stderr
    assert "docker run" not in result.stdout
