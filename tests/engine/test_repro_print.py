"""`repro --print` scripts run as printed, with plain sh and the real docker CLI: for a YAML
module, an @module function, a ContainerModule class, one value of a packed array (YAML
and Python, whose lean record names the boot script kept in run.json) and an Azure ML
component, each exits as its recorded shard did, writes its outputs under
./repro-outputs and leaves no container; a shard recorded as timed out times out again.
(A script stopping at a missing input runs no container: tests/unit/test_repro_print.py.)"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from click.testing import CliRunner
from helpers import BASE_IMAGE, labelled_containers
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.cli import App, cli
from containerexec.errors import ShardFailed
from containerexec.labels import LABEL_REPRO_OF
from containerexec.run.executor import RunOptions
from containerexec.store.tree import RunStore

ROOT = Path(__file__).resolve().parents[2]
AZUREML = ROOT / "specs" / "azureml"
# Reaches the container through the script's quoting and docker's --env as one value.
NOTE = 'it\'s $(touch /tmp/pwned) `id`; "q" * \\ end\nline 2'

SOURCE = '''
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from containerexec.authoring import ContainerModule, InputDir, OutputDir, ShardValue, module


@module(image="containerexec/base:bookworm")
def double(n: int, out: OutputDir) -> int:
    """Writes and returns twice n."""
    (out / "n.txt").write_text(str(2 * n))
    return 2 * n


@module(image="containerexec/base:bookworm",
        array={"values": ["v0", "v1", "v2", "v3"], "batch_size": 2})
def packed(value: ShardValue, out: OutputDir) -> str:
    """Two values per container; v2 fails after writing its file."""
    (out / f"{value}.txt").write_text(value.upper())
    if value == "v2":
        raise SystemExit(6)
    return value.upper()


@dataclass
class Texts:
    texts: InputDir
    counts: OutputDir


class Tally(ContainerModule):
    """One shard per text; a text holding 'bad' fails its shard after writing its count."""

    image = "containerexec/base:bookworm"

    def array(self):
        return [p.name for p in sorted(Path(self.config.texts).glob("*.txt"))]

    def run(self, iteration_value=None, iteration_index=0):
        words = (self.config.texts / iteration_value).read_text().split()
        (self.config.counts / f"{iteration_value}.count").write_text(str(len(words)))
        if "bad" in words:
            raise SystemExit(4)
        return len(words)
'''


def load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "printmods.py"
    if not path.exists():
        path.write_text(SOURCE)
    return load_target(f"{path}:{name}")


def print_script(runs: Path, target: str, where: Path, *args: str) -> Path:
    """`repro TARGET --print` run in `where` (its outputs go under ./repro-outputs there)."""
    where.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(where):
        result = CliRunner().invoke(
            cli,
            ["--runs-dir", str(runs), "repro", target, "--print", *args],
            obj=App(runs_dir=runs, sleep=lambda s: None),
        )
    assert result.exit_code == 0, result.output
    script = where / "repro.sh"
    script.write_text(result.stdout)
    return script


def run_script(
    script: Path, client: docker.DockerClient, run_id: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["sh", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert labelled_containers(client, LABEL_REPRO_OF, run_id) == [], "a container was left"
    return done


def replay(
    runs: Path, run_id: str, where: Path, client: docker.DockerClient, *args: str
) -> subprocess.CompletedProcess[str]:
    """The printed script of `run_id`, run in `where`, to its end."""
    return run_script(print_script(runs, run_id, where, *args), client, run_id)


WC = """\
name: wc
inputs: {corpus: {type: directory}}
outputs: {counts: {type: directory}}
env: {NOTE: NOTE_VALUE}
command: [sh, -c, 'wc -w < "$1" > "$2/$3.tsv"; printf %s "$NOTE" > "$2/note";
          ! grep -q bad "$1" || exit 3', wc,
          "${{inputs.corpus}}/${{shard.value}}", "${{outputs.counts}}", "${{shard.value}}"]
array: {glob: {input: corpus, pattern: "*.txt"}}
resources: {memory: 256m, cpus: 1, timeout: 5m}
""".replace("NOTE_VALUE", json.dumps(NOTE))


def failed_wordcount(workspace: Workspace) -> str:
    """A run of the wordcount shape (one shard per file) whose shard 1 exited 3: its id."""
    corpus = workspace.folder("corpus", {"a.txt": "one two\n", "b.txt": "a bad line\n"})
    _, _, result = workspace.run(
        workspace.spec(WC), {"corpus": str(corpus)}, {"counts": str(workspace.root / "o")}
    )
    assert workspace.shards()[1].exit_code == 3
    return result.record.run_id


def test_yaml_module_script_fails_as_recorded_and_writes_its_outputs_here(
    workspace: Workspace, docker_client: docker.DockerClient
) -> None:
    run_id = failed_wordcount(workspace)

    done = replay(workspace.runs_dir, run_id, workspace.root / "here", docker_client)

    assert done.returncode == 3, done.stderr
    out = workspace.root / "here" / "repro-outputs" / "counts"
    assert sorted(p.name for p in out.iterdir()) == ["b.txt.tsv", "note"]
    assert (out / "b.txt.tsv").read_text().strip() == "3"
    assert (out / "note").read_text() == NOTE
    assert not Path("/tmp/pwned").exists()


def test_module_function_script_writes_its_output_and_its_returned_value(
    tmp_path: Path, test_session_label: dict[str, str], docker_client: docker.DockerClient
) -> None:
    double = load(tmp_path, "double")
    runs = tmp_path / "runs"
    result = double.run(
        n=21, out=tmp_path / "o", runs_dir=runs, options=RunOptions(labels=test_session_label)
    )
    run_id = result.record.run_id

    done = replay(runs, run_id, tmp_path / "here", docker_client, "--shard", "0")

    assert done.returncode == 0, done.stderr
    outputs = tmp_path / "here" / "repro-outputs"
    assert (outputs / "out" / "n.txt").read_text() == "42"
    assert json.loads((outputs / ".returned" / "value.json").read_text()) == 42


def test_container_module_script_fails_its_shard_as_recorded(
    tmp_path: Path, test_session_label: dict[str, str], docker_client: docker.DockerClient
) -> None:
    texts, tally = load(tmp_path, "Texts"), load(tmp_path, "Tally")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("one two")
    (corpus / "b.txt").write_text("so bad here")
    runs = tmp_path / "runs"
    module = tally(texts(texts=corpus, counts=tmp_path / "o")).as_module()
    with pytest.raises(ShardFailed):
        module.run(runs_dir=runs, options=RunOptions(labels=test_session_label))
    store = RunStore(runs)
    run_id = store.load_run("last").run_id
    recorded = store.load_shards(run_id)[1]
    assert recorded.state == "failed"

    done = replay(runs, run_id, tmp_path / "here", docker_client)

    assert done.returncode == recorded.exit_code, done.stderr
    outputs = tmp_path / "here" / "repro-outputs"
    assert (outputs / "counts" / "b.txt.count").read_text() == "3"
    assert (outputs / ".returned").is_dir()


def test_packed_value_script_replays_that_value_alone(
    workspace: Workspace, docker_client: docker.DockerClient
) -> None:
    flags = workspace.folder("flags", {"v2": ""})
    spec = workspace.spec(
        """\
        name: packed
        inputs: {flags: {type: directory}}
        outputs: {out: {type: directory}}
        command: [sh, -c, 'echo "$3 $VALUE" > "$2/$3.txt"; [ ! -e "$1/$3" ] || exit 6',
                  packed, "${{inputs.flags}}", "${{outputs.out}}", "${{shard.value}}"]
        env: {VALUE: "${{shard.value}}"}
        array: {values: [v0, v1, v2, v3]}
        """
    )
    ran = workspace.cli(
        "run", str(spec), "--batch-size", "2", "-i", f"flags={flags}", "-o", "out=o"
    )  # fmt: skip
    assert ran.returncode == 1 and "packing: up to 2 shards per container" in ran.stderr
    run_id = workspace.record().run_id
    assert [s.exit_code for _, s in sorted(workspace.shards().items())] == [0, 0, 6, 0]

    done = replay(workspace.runs_dir, run_id, workspace.root / "here", docker_client)

    assert done.returncode == 6, done.stderr
    out = workspace.root / "here" / "repro-outputs" / "out"
    assert sorted(p.name for p in out.iterdir()) == ["v2.txt"]
    assert (out / "v2.txt").read_text() == "v2 v2\n"


def test_packed_python_value_script_replays_that_value_from_its_lean_record(
    tmp_path: Path, test_session_label: dict[str, str], docker_client: docker.DockerClient
) -> None:
    """The record names the boot script and source kept once in run.json; the script has them."""
    runs = tmp_path / "runs"
    result = load(tmp_path, "packed").run(
        out=tmp_path / "o", runs_dir=runs, options=RunOptions(labels=test_session_label),
        check=False,
    )  # fmt: skip
    run_id = result.record.run_id
    recorded = RunStore(runs).load_shards(run_id)
    assert [s.exit_code for _, s in sorted(recorded.items())] == [0, 0, 6, 0]
    assert "CONTAINEREXEC_PY_BOOT" in recorded[2].env_shared

    failed = replay(runs, run_id, tmp_path / "failed", docker_client)
    value = replay(runs, run_id, tmp_path / "value", docker_client, "--shard", "1")

    assert failed.returncode == 6, failed.stderr
    out = tmp_path / "failed" / "repro-outputs" / "out"
    assert [(p.name, p.read_text()) for p in out.iterdir()] == [("v2.txt", "V2")]
    assert value.returncode == 0, value.stderr
    returned = tmp_path / "value" / "repro-outputs" / ".returned" / "value.json"
    assert json.loads(returned.read_text()) == "V1"


def test_azureml_component_script_fails_as_recorded(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    runs = tmp_path / "runs"
    failed = CliRunner().invoke(
        cli,
        [
            "--runs-dir",
            str(runs),
            "run",
            str(AZUREML / "count.yml"),
            "--image-map",
            str(AZUREML / "images.yaml"),
            "-i",
            f"corpus={AZUREML / 'data' / 'corpus'}",
            "-i",
            "note=fail",
        ],  # fmt: skip
        obj=App(runs_dir=runs, sleep=lambda s: None),
    )
    assert failed.exit_code == 3, failed.output
    run_id = RunStore(runs).load_run("last").run_id

    done = replay(runs, run_id, tmp_path / "here", docker_client)

    assert done.returncode == 3, done.stderr
    outputs = tmp_path / "here" / "repro-outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["counts", "total"]


def test_a_timed_out_shard_times_out_again_through_the_script(
    workspace: Workspace, docker_client: docker.DockerClient
) -> None:
    spec = workspace.spec(
        f"""\
        environment: {{image: {BASE_IMAGE}}}
        name: sleepy
        outputs: {{out: {{type: directory}}}}
        command: [sleep, "600"]
        resources: {{timeout: 2s}}
        """
    )
    _, _, result = workspace.run(spec, {}, {"out": str(workspace.root / "o")})
    run_id = result.record.run_id
    assert workspace.shards()[0].failure == "timeout"

    script = print_script(workspace.runs_dir, run_id, workspace.root / "here")
    started = time.monotonic()
    done = run_script(script, docker_client, run_id, timeout_s=60)
    took = time.monotonic() - started

    assert done.returncode in (124, 137, 143), done.stderr
    assert "timed out after the recorded 2 s" in done.stderr
    grace = result.record.grace_s
    assert took < 2 + grace + 10, f"the script ran {took:.1f} s"
