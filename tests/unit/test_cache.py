"""The shard cache: what its key depends on, checked restores, and entries that appear whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings, bind
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import ModuleSpec, parse_spec
from containerexec.run.cache import Cache

SPEC = """\
name: counter
version: 1.0.0
environment: {image: containerexec/base:bookworm}
inputs:
  corpus: {type: directory}
  min: {type: integer, default: 1}
outputs:
  counts: {type: directory}
  summary: {type: file, path: summary.txt}
command: [python3, /app/c.py, "${{inputs.corpus}}/${{shard.value}}", "${{inputs.min}}",
          "${{outputs.counts}}", "${{outputs.summary}}"]
array: {glob: {input: corpus, pattern: "*.txt"}}
"""


def setup(
    tmp_path: Path, spec_text: str = SPEC, **inputs: object
) -> tuple[ModuleSpec, Bindings, Path]:
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        (corpus / "a.txt").write_text("alpha beta\n")
        (corpus / "b.txt").write_text("gamma\n")
    spec = parse_spec(spec_text, "counter.yaml")
    bindings = bind(spec, {"corpus": str(corpus), **inputs}, {}, default_outputs=tmp_path / "out")
    return spec, bindings, corpus


def invocation(
    spec: ModuleSpec,
    bindings: Bindings,
    *,
    run_id: str = "run-1",
    index: int = 0,
    image: str = "sha256:" + "1" * 64,
    staging: str = "/s/1",
    labels: dict[str, str] | None = None,
    user: str = "1000:1000",
) -> Invocation:
    value = ["a.txt", "b.txt"][index]
    return resolve(
        spec,
        bindings,
        Shard(index, value, 2),
        run_id=run_id,
        image=image,
        staging=Path(staging),
        user=user,
        labels=labels,
    )


def test_key_ignores_run_id_container_name_labels_user_and_staging(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    one = cache.key(spec, b, invocation(spec, b))
    other = invocation(
        spec, b, run_id="run-2", staging="/elsewhere/7", user="0:0", labels={"team": "x"}
    )
    assert other.name != invocation(spec, b).name
    assert cache.key(spec, b, other) == one


def test_key_covers_every_env_var_so_a_python_modules_source_too(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    inv = invocation(spec, b)
    code = inv.model_copy(update={"env": {**inv.env, "CONTAINEREXEC_PY_SOURCE": "eJwr"}})
    edited = inv.model_copy(update={"env": {**inv.env, "CONTAINEREXEC_PY_SOURCE": "eJxL"}})
    assert len({cache.key(spec, b, i) for i in (inv, code, edited)}) == 3
    shard_env = inv.model_copy(update={"env": {**inv.env, "CONTAINEREXEC_SHARD_VALUE": "z"}})
    assert cache.key(spec, b, shard_env) != cache.key(spec, b, inv)
    user_env = inv.model_copy(update={"env": {**inv.env, "LANG": "C"}})
    assert cache.key(spec, b, user_env) != cache.key(spec, b, inv)


def test_key_changes_with_image_argv_shard_version_and_input_bytes(tmp_path: Path) -> None:
    spec, b, corpus = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    base = cache.key(spec, b, invocation(spec, b))
    assert cache.key(spec, b, invocation(spec, b, image="sha256:" + "2" * 64)) != base
    assert cache.key(spec, b, invocation(spec, b, index=1)) != base
    spec2, b2, _ = setup(tmp_path, min=3)
    assert cache.key(spec2, b2, invocation(spec2, b2)) != base
    spec3, b3, _ = setup(tmp_path, SPEC.replace("1.0.0", "1.0.1"))
    assert cache.key(spec3, b3, invocation(spec3, b3)) != base
    (corpus / "b.txt").write_text("gammb\n")  # another shard's file: not what shard 0 sees
    assert cache.key(spec, b, invocation(spec, b, run_id="run-3")) == base
    (corpus / "a.txt").write_text("alphb beta\n")  # one byte of its own file
    assert cache.key(spec, b, invocation(spec, b, run_id="run-4")) != base


def test_a_shard_that_mounts_the_whole_folder_is_keyed_on_every_file(tmp_path: Path) -> None:
    whole = SPEC.replace('"${{inputs.corpus}}/${{shard.value}}"', '"${{inputs.corpus}}"')
    spec, b, corpus = setup(tmp_path, whole)
    cache = Cache(tmp_path / "cache")
    base = cache.key(spec, b, invocation(spec, b))
    (corpus / "c.txt").write_text("new\n")
    assert cache.key(spec, b, invocation(spec, b, run_id="run-2")) != base


def test_inputs_are_hashed_once_per_run(tmp_path: Path) -> None:
    spec, b, corpus = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    first = cache.key(spec, b, invocation(spec, b, run_id="r1"))
    (corpus / "a.txt").write_text("changed\n")
    assert cache.key(spec, b, invocation(spec, b, run_id="r1", index=0)) == first
    assert cache.key(spec, b, invocation(spec, b, run_id="r2")) != first


def test_key_does_not_depend_on_file_times(tmp_path: Path) -> None:
    spec, b, corpus = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    before = cache.key(spec, b, invocation(spec, b, run_id="r1"))
    os.utime(corpus / "a.txt", (1, 1))
    assert cache.key(spec, b, invocation(spec, b, run_id="r2")) == before


def staged(tmp_path: Path, name: str = "staging") -> Path:
    staging = tmp_path / name
    (staging / "counts" / "sub").mkdir(parents=True)
    (staging / "counts" / "sub" / "a.tsv").write_text("alpha\t1\n")
    (staging / "summary").mkdir()
    (staging / "summary" / "summary.txt").write_text("2 words\n")
    return staging


def empty_staging(tmp_path: Path) -> Path:
    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "counts").mkdir(parents=True)
    (fresh / "summary").mkdir()
    return fresh


def test_save_then_restore_gives_the_same_files(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    inv = invocation(spec, b)
    assert not cache.restore(spec, b, inv, empty_staging(tmp_path))
    cache.save(spec, b, inv, staged(tmp_path))
    fresh = empty_staging(tmp_path)
    assert cache.restore(spec, b, invocation(spec, b, run_id="later"), fresh)
    assert (fresh / "counts" / "sub" / "a.tsv").read_text() == "alpha\t1\n"
    assert (fresh / "summary" / "summary.txt").read_text() == "2 words\n"
    assert (cache.hits, cache.misses, cache.saved) == (1, 1, 1)
    leftovers = [p.name for p in (tmp_path / "cache").rglob(".*")]
    assert leftovers == []


def test_changed_or_removed_cached_file_is_a_miss_and_drops_the_entry(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    inv = invocation(spec, b)
    for damage in ("change", "remove"):
        cache.save(spec, b, inv, staged(tmp_path, f"staging-{damage}"))
        entry = cache.entry(cache.key(spec, b, inv))
        target = entry / "outputs" / "counts" / "sub" / "a.tsv"
        if damage == "change":
            target.write_text("alpha\t2\n")
        else:
            target.unlink()
        assert not cache.restore(spec, b, inv, empty_staging(tmp_path))
        assert not entry.exists()
    assert cache.dropped == 2


def test_half_written_entry_is_never_seen(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    inv = invocation(spec, b)
    entry = cache.entry(cache.key(spec, b, inv))
    # A writer that died mid-way leaves only its temporary folder beside the entry.
    tmp = entry.parent / f".{entry.name}.dead.tmp"
    (tmp / "outputs" / "counts").mkdir(parents=True)
    assert not cache.restore(spec, b, inv, empty_staging(tmp_path))
    cache.save(spec, b, inv, staged(tmp_path))
    assert cache.restore(spec, b, inv, empty_staging(tmp_path))


def test_second_save_of_a_key_keeps_the_first_entry(tmp_path: Path) -> None:
    spec, b, _ = setup(tmp_path)
    cache = Cache(tmp_path / "cache")
    inv = invocation(spec, b)
    cache.save(spec, b, inv, staged(tmp_path, "one"))
    other = staged(tmp_path, "two")
    (other / "summary" / "summary.txt").write_text("different\n")
    cache.save(spec, b, inv, other)
    fresh = empty_staging(tmp_path)
    assert cache.restore(spec, b, inv, fresh)
    assert (fresh / "summary" / "summary.txt").read_text() == "2 words\n"
    assert cache.saved == 1


def test_a_file_only_glob_shard_is_keyed_on_its_file_not_its_place(tmp_path: Path) -> None:
    whole = SPEC.replace('"${{inputs.corpus}}/${{shard.value}}"', '"${{inputs.corpus}}"')
    by_index = SPEC.replace('"${{inputs.min}}"', '"${{shard.index}}"')
    cache = Cache(tmp_path / "cache")

    def key(spec: ModuleSpec, b: Bindings, index: int, count: int) -> str:
        shard = Shard(index, "b.txt", count)
        inv = resolve(spec, b, shard, run_id="r", image="i", staging=Path("/s"), user="1:1")
        return cache.key(spec, b, inv)

    for text, same in ((SPEC, True), (whole, False), (by_index, False)):
        spec, b, _ = setup(tmp_path, text)
        # b.txt was shard 1 of 2; a file sorted before it makes it shard 2 of 3.
        assert (key(spec, b, 1, 2) == key(spec, b, 2, 3)) is same, text


CODE = """\
from containerexec.authoring import ContainerModule, OutputDir, module


@module(image="containerexec/base:bookworm")
def f(out: OutputDir) -> None:
    (out / "x").write_text("1")


class C(ContainerModule):
    image = "containerexec/base:bookworm"

    def run(self, iteration_value=None, iteration_index=0):
        return 1
"""


def test_editing_a_python_modules_code_changes_its_key_and_nothing_else_does(
    tmp_path: Path,
) -> None:
    from containerexec.authoring.targets import load_target

    code = tmp_path / "mods.py"
    cache = Cache(tmp_path / "cache")

    def keys() -> list[str]:
        found = []
        for module in (load_target(f"{code}:f"), load_target(f"{code}:C")().as_module()):
            spec = module.spec
            outs = {name: str(tmp_path / name) for name in spec.outputs}
            b = bind(spec, {}, outs, default_outputs=tmp_path / "d")
            inv = resolve(
                spec, b, Shard(0, "", 1), run_id="r", image="i", staging=Path("/s"), user="1:1"
            )
            found.append(cache.key(spec, b, inv))
        return found

    code.write_text(CODE)
    before = keys()
    assert keys() == before  # imported again, unchanged: the same keys
    code.write_text(
        CODE.replace('write_text("1")', 'write_text("2")').replace("return 1", "return 2")
    )
    after = keys()
    assert after[0] != before[0] and after[1] != before[1]
