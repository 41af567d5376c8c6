"""Issue 22 item 2: `ShardFile`. A glob shard of a Python module (an @module parameter, or a
ContainerModule's iteration_value) gets its own file; the glob's folder becomes a directory
input that is mounted and cache-keyed file by file, as for a YAML glob. The specs and
Invocations are pure; the reruns use tests/fakes.FakeEngine (the cache is ours). In real
containers: tests/examples/test_corpus.py."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakeEngine, python_shard
from helpers import job_containers

import containerexec
from containerexec.authoring.targets import load_target
from containerexec.cli import cli
from containerexec.errors import UsageError
from containerexec.model.arrays import expand
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import glob_mount, resolve
from containerexec.pipelines.record import PipelineResult
from containerexec.store.tree import RunStore

SOURCE = """\
from dataclasses import dataclass
from pathlib import Path

from containerexec import ShardFile
from containerexec.authoring import ContainerModule, InputDir, OutputDir, module, pipeline

GLOB = {"glob": {"input": "corpus", "pattern": "*.txt"}}


@module(image="containerexec/base:bookworm", array=GLOB)
def lower(doc: ShardFile, out: OutputDir) -> None:
    (out / doc.name).write_text(doc.read_text().lower())


@dataclass
class Texts:
    corpus: InputDir
    counts: OutputDir


class Count(ContainerModule):
    image = "containerexec/base:bookworm"

    glob = {"input": "corpus", "pattern": "*.txt"}

    def requirements(self):
        return {"max_parallel": 2}

    def run(self, iteration_value=None, iteration_index=0):
        size = len(iteration_value.read_text())
        (self.config.counts / iteration_value.name).write_text(str(size))


@pipeline
def both(corpus: InputDir):
    low = lower(corpus=corpus)
    counts = Count(Texts(corpus=Path("unused"), counts=Path("unused"))).as_module()
    return {"low": low.outputs.out, "counts": counts(corpus=corpus).outputs.counts}
"""


def load(tmp_path: Path, name: str, source: str = SOURCE) -> Any:
    path = tmp_path / "shardmods.py"
    if not path.exists():
        path.write_text(textwrap.dedent(source))
    return load_target(f"{path}:{name}")


def corpus(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(f"Text Number {i}\n")
    return folder


def invocations(spec: Any, data: Path, tmp_path: Path) -> list[Any]:
    bindings = Bindings(inputs={"corpus": str(data)}, outputs={p: "o" for p in spec.outputs})
    return [
        resolve(spec, bindings, s, run_id="r-1", image="img", staging=tmp_path, user="1:1")
        for s in expand(spec.array, bindings.inputs)
    ]


def test_shard_file_is_public() -> None:
    assert "ShardFile" in containerexec.__all__
    assert containerexec.ShardFile is containerexec.authoring.ShardFile


def test_a_shard_file_parameter_mounts_only_its_file_of_a_folder_no_parameter_names(
    tmp_path: Path,
) -> None:
    spec = load(tmp_path, "lower").spec
    assert spec.inputs["corpus"].type == "directory"  # declared by the glob alone
    assert spec.command[3:] == ["doc=${{inputs.corpus}}/${{shard.value}}", "out=${{outputs.out}}"]
    rule = glob_mount(spec)
    assert rule is not None and rule.file_only, rule

    first, second = invocations(spec, corpus(tmp_path / "data", 2), tmp_path)

    [mount] = [m for m in second.mounts if m.kind == "input"]
    assert (mount.source, mount.target, mount.shard_file) == (
        str(tmp_path / "data" / "doc01.txt"),
        "/inputs/corpus/doc01.txt",
        "doc01.txt",
    )
    assert "doc=/inputs/corpus/doc01.txt" in second.argv
    assert "doc=/inputs/corpus/doc00.txt" in first.argv


def test_a_container_module_glob_gives_run_its_file_and_the_field_its_folder(
    tmp_path: Path,
) -> None:
    texts, count = load(tmp_path, "Texts"), load(tmp_path, "Count")
    module = count(texts(corpus=tmp_path / "data", counts=tmp_path / "o")).as_module()
    spec = module.spec
    assert spec.inputs["corpus"].type == "directory"
    assert "corpus=${{inputs.corpus}}/${{shard.value}}" in spec.command
    assert spec.array is not None and spec.array.max_parallel == 2
    rule = glob_mount(spec)
    assert rule is not None and rule.file_only, rule
    entry = spec.env["CONTAINEREXEC_PY_ENTRY"]
    assert '"glob_input": "corpus"' in entry and '"glob_field": true' in entry

    [inv] = invocations(spec, corpus(tmp_path / "data", 1), tmp_path)
    assert [m.shard_file for m in inv.mounts if m.kind == "input"] == ["doc00.txt"]


def test_a_shard_file_without_a_glob_array_is_refused_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "noglob.py"
    source.write_text(
        "from containerexec import ShardFile\n"
        "from containerexec.authoring import module\n"
        "@module(image='x', array={'values': ['a']})\n"
        "def f(doc: ShardFile) -> None: ...\n"
    )
    with pytest.raises(UsageError) as caught:
        load_target(f"{source}:f")
    assert str(caught.value) == (
        "noglob.py:f: parameter 'doc' is a ShardFile, which needs a glob array: "
        "array={'glob': {'input': 'corpus', 'pattern': '*.txt'}}"
    )
    done = CliRunner().invoke(cli, ["spec", "build", f"{source}:f"])
    assert done.exit_code == 2, done.output
    assert done.stderr.count("\n") == 1 and "is a ShardFile" in done.stderr


def test_a_glob_input_close_to_a_parameter_is_a_typo_not_a_new_input(tmp_path: Path) -> None:
    source = tmp_path / "typo.py"
    source.write_text(
        "from containerexec.authoring import InputDir, ShardFile, module\n"
        "@module(image='x', array={'glob': {'input': 'corpsu', 'pattern': '*'}})\n"
        "def f(corpus: InputDir, doc: ShardFile) -> None: ...\n"
    )
    with pytest.raises(UsageError, match="'corpsu' names no parameter; did you mean 'corpus'"):
        load_target(f"{source}:f")


def test_changing_one_file_of_n_reruns_one_shard_of_each_python_job(tmp_path: Path) -> None:
    both = load(tmp_path, "both")
    data, store = corpus(tmp_path / "data", 6), RunStore(tmp_path / "runs")

    def run(n: int) -> PipelineResult:
        return both.run(  # type: ignore[no-any-return]
            corpus=data,
            low=tmp_path / f"low{n}",
            counts=tmp_path / f"counts{n}",
            runs_dir=tmp_path / "runs",
            engine=FakeEngine(python_shard),
        )

    assert job_containers(store, run(1)) == {"lower": 6, "count": 6}
    (data / "doc03.txt").write_text("changed\n")
    again = run(2)
    assert job_containers(store, again) == {"lower": 1, "count": 1}
    assert {j.shards_cached for j in again.record.jobs.values()} == {5}


def test_a_container_module_glob_over_a_file_field_or_with_array_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "fileglob.py"
    source.write_text(
        "from dataclasses import dataclass\n"
        "from containerexec.authoring import ContainerModule, InputFile\n"
        "@dataclass\n"
        "class Cfg:\n"
        "    texts: InputFile\n"
        "class C(ContainerModule):\n"
        "    image = 'x'\n"
        "    glob = {'input': 'texts', 'pattern': '*'}\n"
        "class Both(C):\n"
        "    def array(self):\n"
        "        return ['a']\n"
    )
    cfg, cls = load_target(f"{source}:Cfg"), load_target(f"{source}:C")
    with pytest.raises(UsageError) as caught:
        cls(cfg(texts=tmp_path)).as_module()
    assert str(caught.value) == (
        "fileglob.py:C: config field 'texts' is an input file; the glob array walks it, "
        "so annotate it InputDir"
    )
    both = load_target(f"{source}:Both")
    with pytest.raises(UsageError, match=r"^fileglob.py:Both: set glob or define array\(\), not"):
        both(cfg(texts=tmp_path)).as_module()
