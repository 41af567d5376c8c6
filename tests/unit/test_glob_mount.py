"""Which glob shards mount only their own file (and are keyed on it) and which the whole folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from containerexec.cli import cli
from containerexec.model.arrays import Shard
from containerexec.model.bindings import bind
from containerexec.model.invocation import glob_mount, resolve
from containerexec.model.spec import ModuleSpec, parse_spec

HEAD = """\
name: g
environment: {image: containerexec/base:bookworm}
inputs: {corpus: {type: directory}, other: {type: directory, optional: true}}
outputs: {out: {type: directory}}
array: {glob: {input: corpus, pattern: "**/*.txt"}}
"""


def spec(command: str, env: str = "") -> ModuleSpec:
    return parse_spec(f"{HEAD}command: {command}\n{env}", "g.yaml")


@pytest.mark.parametrize(
    "command",
    [
        '[wc, "${{inputs.corpus}}/${{shard.value}}"]',
        '[cat, "--in=${{inputs.corpus}}/${{shard.value}}", "${{outputs.out}}/${{shard.value}}"]',
        "[sh, -c, 'wc -l ${{inputs.corpus}}/${{shard.value}} > ${{outputs.out}}/n']",
        "[sh, -c, 'cat \"${{inputs.corpus}}/${{shard.value}}\"; ls ${{inputs.other}}']",
    ],
)
def test_the_exact_form_mounts_the_shards_file_alone(command: str) -> None:
    found = glob_mount(spec(command))
    assert found is not None and found.file_only, found
    assert "only its own file of input 'corpus'" in found.describe()


@pytest.mark.parametrize(
    ("command", "env", "why"),
    [
        ('[ls, "${{inputs.corpus}}"]', "", "it is used in '${{inputs.corpus}}'"),
        ('[cat, "${{inputs.corpus}}/${{shard.value}}.idx"]', "", "used in"),
        ('[cat, "${{inputs.corpus}}/${{shard.value}}*"]', "", "used in"),
        ('[cat, "${{inputs.corpus}}/x/${{shard.value}}"]', "", "used in"),
        ('[cat, "${{inputs.corpus}}/${{shard.index}}"]', "", "used in"),
        (
            '[cat, "${{inputs.corpus}}/${{shard.value}}"]',
            'env: {ALL: "${{inputs.corpus}}"}',
            "used in",
        ),
        (
            "[sh, -c, 'cat ${{inputs.corpus}}/${{shard.value}} /inputs/corpus/index']",
            "",
            "'/inputs/corpus' is written",
        ),
        ('[cat, "/inputs/corpus/${{shard.value}}"]', "", "'/inputs/corpus' is written"),
        ('[echo, "${{shard.value}}"]', "", "never names"),
    ],
)
def test_any_other_use_mounts_the_whole_folder(command: str, env: str, why: str) -> None:
    found = glob_mount(spec(command, env))
    assert found is not None and not found.file_only
    assert why in found.why
    assert "mounts all of input 'corpus'" in found.describe()


def test_no_glob_no_rule() -> None:
    text = HEAD.replace('glob: {input: corpus, pattern: "**/*.txt"}', "range: 2")
    assert glob_mount(parse_spec(text + 'command: ["true"]\n', "g.yaml")) is None


def test_a_narrowed_shard_mounts_its_file_read_only_where_the_folder_would_put_it(
    tmp_path: Path,
) -> None:
    s = spec('[wc, "${{inputs.corpus}}/${{shard.value}}"]')
    b = bind(s, {"corpus": str(tmp_path)}, {}, default_outputs=Path("/o"))
    inv = resolve(
        s, b, Shard(1, "sub/b c.txt", 3), run_id="r", image="i", staging=Path("/s"), user="1:1"
    )
    corpus = next(m for m in inv.mounts if m.name == "corpus")
    assert corpus.source == str(tmp_path / "sub" / "b c.txt")
    assert corpus.target == "/inputs/corpus/sub/b c.txt"
    assert corpus.read_only and corpus.is_file and corpus.shard_file == "sub/b c.txt"
    assert inv.argv == ["wc", "/inputs/corpus/sub/b c.txt"]


def test_validate_shows_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(f'{HEAD}command: [wc, "${{{{inputs.corpus}}}}/${{{{shard.value}}}}"]\n')
    shown = CliRunner().invoke(cli, ["validate", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "glob: each shard mounts only its own file of input 'corpus'" in shown.output
    path.write_text(f'{HEAD}command: [ls, "${{{{inputs.corpus}}}}"]\n')
    shown = CliRunner().invoke(cli, ["validate", str(path)])
    assert "glob: each shard mounts all of input 'corpus'" in shown.output
