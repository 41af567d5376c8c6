"""The bundle reader against bundles a sender edited: no traceback, nothing outside the
destination, never more than the cap, nothing loaded unless the bundle is intact.

Pure: a synthetic `docker save` tar stands in for the image and a recording fake engine
for the engine; tests/engine/test_bundle_hostile.py does the same with the real engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakes import FakeEngine

from containerexec.cli import App, cli
from containerexec.engine import archive
from containerexec.engine.base import ImageInfo
from containerexec.errors import ContainerExecError, UntrustedInput
from containerexec.repro import sources
from containerexec.store import bundle as bundles
from containerexec.store import export as portable
from containerexec.store.tree import RunStore
from unit.test_repro_offline import RUN_ID, make_run

CAP = 1 << 20


def image_tar(tags: list[str] | None = None, *, salt: str = "") -> tuple[bytes, str]:
    """A one-image `docker save` tar and its image ID (the sha256 of its config)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "salt": salt}).encode()
    digest = hashlib.sha256(config).hexdigest()
    layer = b"layer bytes " * 100
    manifest = [{"Config": f"{digest}.json", "RepoTags": tags, "Layers": ["l/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [
            (f"{digest}.json", config),
            ("l/layer.tar", layer),
            ("manifest.json", json.dumps(manifest).encode()),
            ("repositories", json.dumps({"victim": {"latest": digest}}).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), f"sha256:{digest}"


class Recording(FakeEngine):
    """Has no image until one is loaded; records the sha256 of every tar it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.image: str | None = None

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(id=ref, tags=[]) if ref == self.image else None

    def load_image(self, src: Path) -> list[str]:
        self.loaded.append(hashlib.sha256(src.read_bytes()).hexdigest())
        self.image = archive.image_id(src)
        return [self.image]


@dataclass(frozen=True)
class Good:
    path: Path
    run: portable.RunExport
    image: bytes
    image_id: str


def good_bundle(
    tmp_path: Path, name: str = "good.tar", *, a_txt: str | None = None, b_txt: str | None = None
) -> Good:
    """A bundle of make_run's run; `a_txt`, `b_txt`: other contents for its input files."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store, _ = make_run(tmp_path)
    for file, text in {"a.txt": a_txt, "b.txt": b_txt}.items():
        if text is not None:
            (tmp_path / "data" / file).write_text(text)
    image, image_id = image_tar(["victim:latest"])
    run = portable.export_run(store, RUN_ID)
    run = run.model_copy(
        update={
            "run": run.run.model_copy(
                update={"image": run.run.image.model_copy(update={"id": image_id})}
            )
        }
    )
    rec = run.shards[1]
    m = rec.invocation.mounts[0]

    def save(_id: str, dest: Path) -> int:
        dest.write_bytes(image)
        return len(image)

    path = tmp_path / name
    bundles.write_bundle(
        path,
        [run],
        images={image_id: "job:1"},
        save_image=save,
        inputs=[bundles.InputSource(m.name, Path(m.source), m.is_file)],
        inputs_of=(RUN_ID, 1),
    )
    return Good(path, run, image, image_id)


def replay(bundle: Path, root: Path, engine: Recording, cap: int = CAP) -> Path:
    """What `repro BUNDLE` takes out of it: the inputs, then the image."""
    store = RunStore(root / "store")
    b = bundles.Bundle(bundle, max_unpacked=cap)
    source = sources.Source(next(iter(b.runs.values())), bundle=b)
    rec = source.run.shards[1]
    got = sources.bundle_inputs(store, source, rec, {})
    sources.bundle_image(engine, source, source.run.run.image.id)
    return Path(got.inputs["data"])


def test_an_intact_bundle_unpacks_its_inputs_and_loads_its_image_once(tmp_path: Path) -> None:
    good = good_bundle(tmp_path)
    engine = Recording()
    data = replay(good.path, tmp_path / "here", engine)
    assert sorted(p.name for p in data.iterdir()) == ["a.txt", "b.txt"]
    assert engine.loaded == [hashlib.sha256(good.image).hexdigest()]
    assert not list(data.parent.glob(".cx-unpack-*"))


def test_an_image_with_another_id_is_refused_naming_both_ids_and_nothing_is_loaded(
    tmp_path: Path,
) -> None:
    good = good_bundle(tmp_path)
    other, other_id = image_tar(salt="edited")
    edited = rewrite(good.path, tmp_path / "edited.tar", replace={_image_member(good): other})
    engine = Recording()
    with pytest.raises(UntrustedInput) as err:
        replay(edited, tmp_path / "here", engine)
    assert good.image_id in str(err.value) and other_id in str(err.value)
    assert engine.loaded == []


def test_a_bundle_from_before_the_file_list_opens_but_unpacks_nothing(tmp_path: Path) -> None:
    good = good_bundle(tmp_path)
    old = rewrite(good.path, tmp_path / "old.tar", manifest=lambda m: {**m, "files": None})
    with pytest.raises(UntrustedInput, match="export it again"):
        replay(old, tmp_path / "here", Recording())
    assert not list((tmp_path / "here" / "store").glob(f"bundles/{RUN_ID}-*/inputs"))


def test_untagged_drops_repo_tags_and_the_repositories_file(tmp_path: Path) -> None:
    data, image_id = image_tar(["victim:latest"])
    (tmp_path / "in.tar").write_bytes(data)
    archive.untagged(tmp_path / "in.tar", tmp_path / "out.tar")
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert "repositories" not in tar.getnames()
        f = tar.extractfile("manifest.json")
        assert f is not None
        assert json.loads(f.read())[0]["RepoTags"] is None
    assert archive.image_id(tmp_path / "out.tar") == image_id


def test_a_glob_shards_own_file_is_stored_under_its_name_and_given_as_its_folder(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "b.txt").write_text("bravo\n")
    good = good_bundle(tmp_path / "g")
    path = tmp_path / "glob.tar"
    bundles.write_bundle(
        path,
        [good.run],
        inputs=[bundles.InputSource("data", data / "sub/b.txt", True, shard_file="sub/b.txt")],
        inputs_of=(RUN_ID, 1),
    )
    with tarfile.open(path) as tar:
        assert "inputs/data/sub/b.txt" in tar.getnames()
    b = bundles.Bundle(path)
    folder = b.extract("inputs/data", tmp_path / "here")
    assert (folder / "sub" / "b.txt").read_text() == "bravo\n"


def test_max_unpacked_takes_sizes_and_refuses_nonsense_in_one_line(tmp_path: Path) -> None:
    got = CliRunner().invoke(
        cli, ["--runs-dir", str(tmp_path), "repro", "x.tar", "--max-unpacked", "12Q"]
    )
    assert got.exit_code == 2, got.output
    assert "--max-unpacked" in got.output and "Traceback" not in got.output
    assert len(got.output.strip().splitlines()) == 1


# The randomized test: ~300 edited bundles.

Members = list[tuple[tarfile.TarInfo, bytes]]


def members(path: Path) -> Members:
    with tarfile.open(path, "r:*") as tar:
        out = []
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            out.append((m, f.read() if f else b""))
        return out


def write(dest: Path, items: Members, gz: bool) -> Path:
    with tarfile.open(dest, "w:gz" if gz else "w") as tar:
        for m, data in items:
            tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return dest


def rewrite(
    src: Path,
    dest: Path,
    *,
    replace: dict[str, bytes] | None = None,
    manifest: object = None,
) -> Path:
    """`src` with some members' bytes replaced (and listed as such, as a careful sender
    would), bundle.json then passed through `manifest`."""
    new = replace or {}
    items = []
    for m, data in members(src):
        if m.name in new:
            data = new[m.name]
            m.size = len(data)
        if m.name == bundles.MANIFEST:
            doc = json.loads(data)
            for e in doc["files"]:
                if e["path"] in new:
                    e.update(
                        size=len(new[e["path"]]), sha256=hashlib.sha256(new[e["path"]]).hexdigest()
                    )
            data = json.dumps(manifest(doc) if callable(manifest) else doc).encode()
            m.size = len(data)
        items.append((m, data))
    return write(dest, items, dest.name.endswith(".gz"))


def _image_member(good: Good) -> str:
    return f"images/{good.image_id.removeprefix('sha256:')[:32]}.tar"


def mutate(rng: random.Random, good: Good, dest: Path, outside: Path) -> Path:
    """One edit a sender could make; `outside` is where an escape would write."""
    gz = rng.random() < 0.4
    dest = dest.with_suffix(".tar.gz" if gz else ".tar")
    items = members(good.path)
    doc = json.loads(next(d for m, d in items if m.name == bundles.MANIFEST))
    kind = rng.choice(["flip", "cut", "type", "name", "lie", "extra", "bomb", "order"])
    i = rng.choice([n for n, (m, _) in enumerate(items) if m.name.startswith(("inputs", "images"))])
    m, data = items[i]
    if kind == "type":
        m.type = rng.choice(
            [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.DIRTYPE]
        )
        m.linkname = rng.choice([str(outside / "link"), "../../../../x", "inputs/data/a.txt"])
        m.size = 0
        items[i] = (m, b"")
    elif kind == "name":
        m.name = rng.choice(
            ["../x", str(outside / "abs.txt"), "inputs/data/../../x", "inputs/data/./a"]
            + ["inputs//b", m.name + "/../../../escape", "inputs/data/\nx"]
        )
    elif kind == "lie":
        e = rng.choice(doc["files"])
        e[rng.choice(["size", "sha256", "path"])] = rng.choice([6, "0" * 64, "inputs/data/z"])
    elif kind == "extra":
        extra = tarfile.TarInfo(rng.choice(["inputs/data/new.txt", "images/x.tar"]))
        extra.size = 3
        items.insert(i, (extra, b"new"))
    elif kind == "bomb":
        big = b"\0" * (CAP + rng.choice([1, 4 << 20]))
        m.size = len(big)
        items[i] = (m, big)
        if rng.random() < 0.5:  # an honest manifest: the cap stops it
            for e in doc["files"]:
                if e["path"] == m.name:
                    e.update(size=len(big), sha256=hashlib.sha256(big).hexdigest())
    elif kind == "order":
        rng.shuffle(items)
    elif kind == "flip" and m.isfile() and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        items[i] = (m, bytes(b))
    for n, (mm, _d) in enumerate(items):
        if mm.name == bundles.MANIFEST:  # with what "lie" and "bomb" changed in it
            items[n] = (mm, json.dumps(doc).encode())
            mm.size = len(items[n][1])
    write(dest, items, gz)
    raw = dest.read_bytes()
    if kind == "cut":
        dest.write_bytes(raw[: rng.randrange(1, len(raw))])
    elif kind == "flip" and rng.random() < 0.5:  # in the tar (or gzip) stream itself
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        dest.write_bytes(bytes(b))
    return dest


def test_randomized_edited_bundles_never_escape_overflow_traceback_or_load(
    tmp_path: Path,
) -> None:
    good = good_bundle(tmp_path / "good")
    good_sha = hashlib.sha256(good.image).hexdigest()
    rng = random.Random(20)
    refused = loaded = 0
    for n in range(300):
        root = tmp_path / f"r{n}"
        outside = root / "outside"
        outside.mkdir(parents=True)
        path = mutate(rng, good, root / "b", outside)
        engine = Recording()
        try:
            replay(path, root, engine)
        except ContainerExecError as exc:
            refused += 1
            assert "\n" not in str(exc), exc
        # Nothing outside the store's bundle folder, nothing left half-unpacked.
        written = [
            p
            for p in root.rglob("*")
            if p.is_file() and p != path and not p.is_relative_to(root / "store" / "bundles")
        ]
        assert written == [], (n, written)
        assert not list(root.rglob(".cx-*")), n
        under = root / "store" / "bundles"
        assert sum(p.stat().st_size for p in under.rglob("*") if p.is_file()) <= CAP, n
        assert all(h == good_sha for h in engine.loaded), n
        loaded += bool(engine.loaded)
        assert not os.path.lexists(tmp_path / "x") and not os.path.lexists(tmp_path / "escape")
    print(f"300 edited bundles: {refused} refused, {loaded} loaded an intact image")
    assert refused > 200


def test_gzip_of_zeros_past_the_cap_is_stopped_before_writing_it(tmp_path: Path) -> None:
    """The issue's case: 400 MiB of zeros (gzipped to about 0.4 MiB) declared as 6 bytes."""
    good = good_bundle(tmp_path / "g")
    items = members(good.path)
    zeros = tarfile.TarInfo("inputs/data/a.txt")
    zeros.size = 400 << 20
    dest = tmp_path / "bomb.tar.gz"
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for m, data in items:
            if m.name == "inputs/data/a.txt":
                tar.addfile(zeros, Zeros(zeros.size))
            else:
                tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    assert dest.stat().st_size < 2 << 20
    with pytest.raises(UntrustedInput, match="inputs/data/a.txt"):
        replay(dest, tmp_path / "here", Recording(), cap=bundles.Budget.for_bundle(dest).cap)
    assert not list((tmp_path / "here").rglob("*.txt"))


class Zeros(io.RawIOBase):
    """`n` zero bytes, made as they are read."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def test_is_bundle_takes_a_cut_gzip_so_it_is_named_not_read_as_json(tmp_path: Path) -> None:
    good = good_bundle(tmp_path, "good.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.path.read_bytes()[:200])
    assert bundles.is_bundle(cut)
    with pytest.raises(UntrustedInput, match="cut.tar.gz"):
        bundles.Bundle(cut)


def test_max_unpacked_sets_the_cap_of_a_replay_from_the_command_line(tmp_path: Path) -> None:
    good = good_bundle(tmp_path)  # its inputs: a.txt and b.txt, 6 bytes each

    def repro(runs: str, cap: str) -> Result:
        args = ["--runs-dir", str(tmp_path / runs), "repro", str(good.path), "--print"]
        app = App(runs_dir=tmp_path / runs, engine_factory=Recording)  # docker-py's socket leaks
        return CliRunner().invoke(cli, [*args, "--max-unpacked", cap], obj=app)

    low = repro("low", "10")
    assert low.exit_code == 2, low.output
    assert "would unpack past 10 bytes" in low.output and "--max-unpacked SIZE" in low.output
    assert not list((tmp_path / "low").glob(f"bundles/{RUN_ID}-*/inputs"))
    enough = repro("enough", "1k")
    assert "inputs data from the bundle" in enough.output, enough.output


def _with_manifest(items: Members, fields: dict[str, object]) -> Members:
    """`items` with bundle.json's `fields` replaced."""
    out = []
    for m, d in items:
        if m.name == bundles.MANIFEST:
            d = json.dumps({**json.loads(d), **fields}).encode()
            m.size = len(d)
        out.append((m, d))
    return out


OPENING: dict[str, tuple[Callable[[Members], Members], str]] = {
    "huge bundle.json": (
        lambda items: [
            (_sized(m, 17 << 20), b"{" * (17 << 20)) if m.name == "bundle.json" else (m, d)
            for m, d in items
        ],
        "over the 16777216 bytes read of it",
    ),
    "bundle.json a symlink": (
        lambda items: [(_linked(m), b"") if m.name == "bundle.json" else (m, d) for m, d in items],
        "member 'bundle.json' is not a regular file",
    ),
    "bad run id": (lambda items: _with_manifest(items, {"runs": ["../../etc"]}), "not a run id"),
    "deep pipeline.json": (
        lambda items: [
            *_with_manifest(items, {"pipeline": "p-1"}),
            (_sized(tarfile.TarInfo("pipeline.json"), 100_000), b"[" * 100_000),
        ],
        "pipeline.json",
    ),
    "no bundle.json": (
        lambda items: [(m, d) for m, d in items if m.name != "bundle.json"],
        "no member 'bundle.json'",
    ),
}


def _sized(m: tarfile.TarInfo, n: int) -> tarfile.TarInfo:
    m.size = n
    return m


def _linked(m: tarfile.TarInfo) -> tarfile.TarInfo:
    m.type, m.linkname, m.size = tarfile.SYMTYPE, "/etc/passwd", 0
    return m


@pytest.mark.parametrize("case", OPENING)
def test_opening_a_hostile_bundle_is_one_line_never_a_traceback(tmp_path: Path, case: str) -> None:
    good = good_bundle(tmp_path)
    edit, said = OPENING[case]
    path = write(tmp_path / "edited.tar", edit(members(good.path)), gz=False)
    with pytest.raises(UntrustedInput) as err:
        bundles.Bundle(path)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_two_bundles_of_one_run_id_with_other_inputs_never_share_an_unpacked_folder(
    tmp_path: Path,
) -> None:
    first = good_bundle(tmp_path / "one")
    data = replay(first.path, tmp_path / "here", Recording())
    other = good_bundle(tmp_path / "two", a_txt="another a.txt\n")  # another sender's
    assert other.run.run.run_id == first.run.run.run_id
    got = replay(other.path, tmp_path / "here", Recording())
    assert got != data
    assert (got / "a.txt").read_text() == "another a.txt\n"
    assert (data / "a.txt").read_text() == "alpha\n"
