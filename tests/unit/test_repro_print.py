"""`repro --print` of a hostile record: every word reaches docker intact, no comment or
message carries a control character, each input is checked and each output folder made.
And the script of a run recorded on tests/fakes.FakeEngine stops at a missing input
before any `docker run` (moved from tests/engine/test_repro_print.py).

Regenerate the golden script with `UPDATE_GOLDEN=1 pytest tests/unit/test_repro_print.py`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_cli import FakeWorkspace
from fakes import FakeEngine, Outcome, no_engine

from containerexec.cli import App, cli
from containerexec.errors import UntrustedInput
from containerexec.model.invocation import Invocation, Limits, Mount
from containerexec.repro import dockerscript, planning
from containerexec.store.export import RunExport
from containerexec.store.records import ImageRecord, RunRecord, ShardRecord
from containerexec.store.tree import RunStore

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
RUN_ID = "job-20260101-000000-abcdef"
NEW_ID = "job-repro-20260101-000001-fedcba"
# What a sender may put where the model still allows any text.
EVIL = 'it\'s $(touch pwned) `touch pwned`; touch pwned\ntouch pwned \\ "q" * ${HOME}'
RETURNED = "/outputs/.containerexec-returned"
IMAGE = "img'$(touch pwned)`x`;y\nz"  # a local build's reference: checked, never pulled


def hostile_plan(root: Path) -> planning.Plan:
    """A failed shard whose env, paths, labels, argv, image and failure text are hostile."""
    data = root / f"da;ta {EVIL}"
    out = root / f"repro-outputs {EVIL}"
    inv = Invocation(
        run_id=NEW_ID,
        module="job",
        shard_index=1,
        shard_count=2,
        shard_value=EVIL,
        image=IMAGE,
        argv=["python3", "/app/job.py", EVIL, "--flag=$(id)", ""],
        env={"MODE": EVIL, "EMPTY": "", "HOME": "/tmp"},
        secret_names=["API_TOKEN"],
        mounts=[
            Mount(
                kind="input", name="data", source=str(data), target="/inputs/data", read_only=True
            ),
            *(
                Mount(
                    kind="output", name=name, source=str(out / name), target=target, read_only=False
                )
                for name, target in [("out", "/outputs/out"), (".returned", RETURNED)]
            ),
        ],
        workdir="/work",
        user="1000:1000",
        limits=Limits(memory_bytes=256 << 20, cpus=1.5, shm_size_bytes=64 << 20, timeout_s=7),
        labels={"containerexec.run": NEW_ID, "team": EVIL},
        name=f"cx-{NEW_ID}-1",
    )
    shard = ShardRecord(
        run_id=RUN_ID,
        index=1,
        value=EVIL,
        state="failed",
        failure=f"exit_code\n{EVIL}",
        exit_code=3,
        log_path="/nowhere",
        invocation=inv,
    )
    run = RunRecord(
        run_id=RUN_ID,
        module="job",
        version="1",
        spec_path=None,
        spec={},
        image=ImageRecord(ref=IMAGE, pinned=IMAGE, id="sha256:" + "b" * 64, source="build"),
        inputs={"data": str(data)},
        outputs={"out": "/x"},
        shard_count=2,
        max_parallel=1,
        state="failed",
        started_at=1.0e9,
    )
    return planning.Plan(
        source=RunExport(run=run, shards=[shard]),
        shard=shard,
        inv=inv,
        run_id=NEW_ID,
        inputs={"data": str(data)},
        outputs={"out": str(out / "out")},
        notes=[],
    )


def test_hostile_script_matches_its_golden_file() -> None:
    text = dockerscript.print_script(hostile_plan(Path("/hostile")), "run", grace_s=2)
    path = GOLDEN / "repro_print_hostile.sh"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1 and review it"
    )


@pytest.mark.parametrize("mode", ["run", "shell"])
def test_hostile_script_parses_in_bash_and_sh(mode: planning.Mode, tmp_path: Path) -> None:
    script = tmp_path / "repro.sh"
    script.write_text(dockerscript.print_script(hostile_plan(tmp_path), mode))
    for shell in ("bash", "sh"):
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    header = script.read_text().splitlines()[1]
    assert header.startswith("# Replays shard 1 of run ") and "\\n" in header


def stub_docker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `docker` first on PATH that keeps each call's words, NUL-separated, in a file;
    `docker run` exits $STUB_EXIT."""
    calls, bin_dir = tmp_path / "calls", tmp_path / "bin"
    calls.mkdir()
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(
        '#!/bin/sh\nn=$(ls "$CALLS" | wc -l)\n'
        'for a in "$@"; do printf \'%s\\0\' "$a"; done > "$CALLS/$n"\n'
        '[ "$1" != run ] || exit "${STUB_EXIT:-0}"\n'
    )
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    return env, calls


def recorded_calls(calls: Path) -> list[list[str]]:
    return [
        (calls / str(n)).read_text().split("\0")[:-1] for n in range(len(list(calls.iterdir())))
    ]


def run_printed(
    tmp_path: Path, *, with_input: bool = True, **env: str
) -> tuple[planning.Plan, subprocess.CompletedProcess[str], list[list[str]]]:
    """The hostile plan's script run by sh with the stub docker and `env` added (a variable
    given as "" is removed): the plan, how it ended, and the docker calls it made."""
    plan = hostile_plan(tmp_path)
    if with_input:
        Path(plan.inv.mounts[0].source).mkdir()
    script = tmp_path / "repro.sh"
    script.write_text(dockerscript.print_script(plan, "run"))
    base, calls = stub_docker(tmp_path)
    merged = {k: v for k, v in {**base, **env}.items() if v != ""}
    done = subprocess.run(
        ["sh", str(script)], cwd=tmp_path, env=merged, capture_output=True, text=True, timeout=30
    )
    return plan, done, recorded_calls(calls)


def test_each_word_of_a_hostile_record_reaches_docker_intact(tmp_path: Path) -> None:
    plan, done, calls = run_printed(tmp_path, API_TOKEN="s3cret", STUB_EXIT="3")

    assert done.returncode == 3, done.stderr
    inspect, run = calls
    assert inspect == ["image", "inspect", IMAGE]
    assert run == dockerscript.print_command(plan, "run", name=plan.inv.name)[1:]
    assert run[-5:] == ["python3", "/app/job.py", EVIL, "--flag=$(id)", ""]
    assert ["--env", f"MODE={EVIL}"] == run[
        run.index(f"MODE={EVIL}") - 1 : run.index(f"MODE={EVIL}") + 1
    ]
    assert f"team={EVIL}" in run
    # Every output folder is made, the value folder included, and nothing else.
    outputs = Path(plan.inv.mounts[1].source).parent
    assert sorted(p.name for p in outputs.iterdir()) == [".returned", "out"]
    assert not list(tmp_path.rglob("pwned"))


def test_a_missing_input_stops_the_script_with_exit_2_naming_it(tmp_path: Path) -> None:
    plan, done, calls = run_printed(tmp_path, with_input=False, API_TOKEN="s3cret")

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"input 'data' of run {RUN_ID}: {tmp_path}/da;ta it's $(touch pwned)")
    assert line.endswith("is not a directory here; copy the data here, or print the script "
                         "again with --inputs data=PATH")  # fmt: skip
    assert "\\n" in line  # the newline of the path, escaped
    assert [c[:2] for c in calls] == [["image", "inspect"]]
    assert not Path(plan.inv.mounts[1].source).parent.exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"secret_names": ["X}$(touch pwned)"]}, "secret name 'X}$(touch pwned)'"),
        ({"env": {"A=B": "c"}}, "environment variable 'A=B'"),
        ({"labels": {"": "c"}}, "label ''"),
    ],
)
def test_words_docker_cannot_carry_are_refused_naming_them(
    change: dict[str, object], named: str
) -> None:
    plan = hostile_plan(Path("/hostile"))
    plan = planning.Plan(**{**plan.__dict__, "inv": plan.inv.model_copy(update=change)})
    with pytest.raises(UntrustedInput, match=f"run '{RUN_ID}' shard 1: {re.escape(named)}"):
        dockerscript.print_script(plan, "run")


def test_the_cli_refuses_an_edited_record_in_one_line_with_exit_2(tmp_path: Path) -> None:
    plan = hostile_plan(tmp_path)
    Path(plan.inv.mounts[0].source).mkdir()
    store = RunStore(tmp_path / "store")
    # An honest record in every other way (a valid spec, this user, the returned value
    # asked for), so the bad env name is what the replay refuses.
    spec = {
        "name": "job",
        "version": "1",
        "environment": {"image": "x"},
        "inputs": {"data": {"type": "directory"}},
        "outputs": {"out": {"type": "directory"}},
        "command": ["true"],
    }
    store.write_run(
        plan.source.run.model_copy(update={"spec": spec, "input_manifests": {"data": []}})
    )
    env = {"A=B": "c", "CONTAINEREXEC_RETURN_FILE": f"{RETURNED}/value.json"}
    me = f"{os.getuid()}:{os.getgid()}"
    store.write_shard(
        plan.shard.model_copy(
            update={"invocation": plan.inv.model_copy(update={"env": env, "user": me})}
        )
    )

    result = CliRunner().invoke(
        cli,
        ["--runs-dir", str(store.root), "repro", RUN_ID, "--print"],
        obj=App(runs_dir=store.root, engine_factory=no_engine),
    )

    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert f"run '{RUN_ID}' shard 1: environment variable 'A=B' has no name or holds '='" in line
    assert result.stdout == ""


def test_a_missing_secret_stops_the_script_before_any_folder_is_made(tmp_path: Path) -> None:
    plan, done, calls = run_printed(tmp_path, API_TOKEN="")

    assert done.returncode != 0
    assert "export the secret API_TOKEN first" in done.stderr
    assert [c[:2] for c in calls] == [["image", "inspect"]]
    assert not Path(plan.inv.mounts[1].source).parent.exists()


WC = """\
name: wc
inputs: {corpus: {type: directory}}
outputs: {counts: {type: directory}}
command: [sh, -c, 'wc -w < "$1" > "$2/$3.tsv"; ! grep -q bad "$1" || exit 3', wc,
          "${{inputs.corpus}}/${{shard.value}}", "${{outputs.counts}}", "${{shard.value}}"]
array: {glob: {input: corpus, pattern: "*.txt"}}
"""


def test_yaml_module_script_stops_with_exit_2_naming_a_missing_input(tmp_path: Path) -> None:
    engine = FakeEngine(lambda inv, n: Outcome(exit_code=3 if inv.shard_index == 1 else 0))
    workspace = FakeWorkspace(tmp_path, engine)
    corpus = workspace.folder("corpus", {"a.txt": "one two\n", "b.txt": "a bad line\n"})
    _, _, result = workspace.run(
        workspace.spec(WC), {"corpus": str(corpus)}, {"counts": str(workspace.root / "o")}
    )
    assert workspace.shards()[1].exit_code == 3
    run_id = result.record.run_id
    here = workspace.root / "here"
    here.mkdir()
    with contextlib.chdir(here):
        printed = CliRunner().invoke(
            cli,
            ["--runs-dir", str(workspace.runs_dir), "repro", run_id, "--print"],
            obj=App(runs_dir=workspace.runs_dir, engine_factory=lambda: engine),
        )
    assert printed.exit_code == 0, printed.output
    script = here / "repro.sh"
    script.write_text(printed.stdout)
    gone = workspace.root / "corpus" / "b.txt"
    gone.unlink()

    env, calls = stub_docker(tmp_path)
    done = subprocess.run(["sh", str(script)], cwd=here, env=env, capture_output=True, text=True)

    assert done.returncode == 2
    assert f"input 'corpus' of run {run_id}: {gone} is not a file here" in done.stderr
    assert not (workspace.root / "here" / "repro-outputs").exists()
    assert "run" not in [c[0] for c in recorded_calls(calls)]  # no container was started
