"""Repro without an engine: export, loading, shard choice, input checks, argv, verdicts."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import no_engine

from containerexec.cli import App, cli
from containerexec.errors import InputsChanged, RecordError, UsageError
from containerexec.labels import LABEL_REPRO_OF
from containerexec.model.invocation import Invocation, Limits, Mount
from containerexec.repro import dockerscript, planning, replay
from containerexec.run.runner import Attempt, Failure
from containerexec.store import export as portable
from containerexec.store import manifests
from containerexec.store.records import FileEntry, ImageRecord, RunRecord, ShardRecord, write_json
from containerexec.store.tree import RunStore

DIGEST = "127.0.0.1:5000/cx/job@sha256:" + "a" * 64
RUN_ID = "job-20260101-000000-abcdef"
JOB_SPEC = {
    "name": "job",
    "environment": {"image": "127.0.0.1:5000/cx/job:1"},
    "inputs": {"data": {"type": "directory"}},
    "outputs": {"out": {"type": "directory"}},
    "command": ["python3", "-u", "/app/job.py", "${{shard.value}}", "${{inputs.data}}"],
    "array": {"values": ["v0", "v1", "v2"]},
}


def make_run(tmp_path: Path, *, failed: tuple[int, ...] = (1,)) -> tuple[RunStore, Path]:
    """A recorded 3-shard run with a data input of two files, one failed shard, a secret."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    (data / "b.txt").write_text("bravo\n")
    store = RunStore(tmp_path / "store")
    manifest = [FileEntry(path=p, size=n, sha256=h) for p, n, h in manifests.manifest(str(data))]
    store.write_run(
        RunRecord(
            run_id=RUN_ID,
            module="job",
            version="1",
            spec_path=None,
            spec=JOB_SPEC,
            image=ImageRecord(
                ref="127.0.0.1:5000/cx/job:1",
                pinned=DIGEST,
                id="sha256:" + "b" * 64,
                digest=DIGEST,
                source="pull",
            ),
            inputs={"data": str(data)},
            outputs={"out": "/somewhere/out"},
            input_manifests={"data": manifest},
            secret_names=["API_TOKEN"],
            shard_count=3,
            max_parallel=3,
            state="failed",
            exit_code=1,
            started_at=1.0e9,
        )
    )
    for i in range(3):
        state = "failed" if i in failed else "succeeded"
        inv = Invocation(
            run_id=RUN_ID,
            module="job",
            shard_index=i,
            shard_count=3,
            shard_value=f"v{i}",
            image=DIGEST,
            argv=["python3", "-u", "/app/job.py", f"v{i}", "/inputs/data"],
            env={"HOME": "/tmp", "CONTAINEREXEC_SHARD_INDEX": str(i), "MODE": "it's; fine"},
            secret_names=["API_TOKEN"],
            mounts=[
                Mount(
                    kind="input",
                    name="data",
                    source=str(data),
                    target="/inputs/data",
                    read_only=True,
                ),
                Mount(
                    kind="output",
                    name="out",
                    source="/staging/out",
                    target="/outputs/out",
                    read_only=False,
                ),
            ],
            workdir="/work",
            user=f"{os.getuid()}:{os.getgid()}",
            limits=Limits(memory_bytes=256 << 20, cpus=1.5),
            labels={"containerexec.run": RUN_ID, "containerexec.shard": str(i)},
            name=f"cx-{RUN_ID}-{i}",
        )
        log = store.log_path(RUN_ID, i)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"line {n}\n" for n in range(300)) + f"last of {i}\n")
        store.write_shard(
            ShardRecord(
                run_id=RUN_ID,
                index=i,
                value=f"v{i}",
                state=state,  # type: ignore[arg-type]
                exit_code=3 if state == "failed" else 0,
                log_path=str(log),
                invocation=inv,
            )
        )
    return store, data


def test_export_holds_every_shard_and_log_tails_but_no_secret_value(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    export = portable.export_run(store, "last")
    assert [s.index for s in export.shards] == [0, 1, 2]
    assert export.logs[1][-1] == "last of 1"
    assert len(export.logs[1]) == portable.EXPORT_LOG_LINES
    assert all("API_TOKEN" not in s.invocation.env for s in export.shards)
    assert export.shards[0].invocation.secret_names == ["API_TOKEN"]


def test_runs_export_cli_writes_a_file_that_loads_back(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    out = tmp_path / "run.export.json"
    result = CliRunner().invoke(
        cli, ["--runs-dir", str(store.root), "runs", "export", "job-", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["kind"] == portable.EXPORT_KIND
    loaded = portable.load_source(RunStore(tmp_path / "elsewhere"), str(out))
    assert loaded.run.run_id == RUN_ID
    assert loaded.logs[2][-1] == "last of 2"


def test_load_source_takes_a_run_json_or_a_run_id(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    by_file = portable.load_source(RunStore(tmp_path), str(store.run_dir(RUN_ID) / "run.json"))
    by_id = portable.load_source(store, "last")
    assert len(by_file.shards) == len(by_id.shards) == 3


@pytest.mark.parametrize("where", ["top", "shard"])
def test_a_record_from_a_newer_schema_is_refused_saying_upgrade(tmp_path: Path, where: str) -> None:
    store, _ = make_run(tmp_path)
    data = portable.export_run(store, RUN_ID).model_dump(mode="json")
    target = data if where == "top" else data["shards"][1]
    target["schema_version"] = 99
    path = tmp_path / "newer.json"
    write_json(path, data)
    with pytest.raises(RecordError, match=r"newer containerexec \(schema 99.*upgrade"):
        portable.load_source(store, str(path))


def test_a_missing_record_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such file; give a file written by"):
        portable.load_source(RunStore(tmp_path), str(tmp_path / "nope.json"))


def test_without_shard_the_first_failed_shard_is_replayed(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path, failed=(2, 1))
    assert planning.pick_shard(portable.load_source(store, RUN_ID), None).index == 1


def test_a_run_without_failures_asks_for_a_shard(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path, failed=())
    with pytest.raises(UsageError, match=r"no failed shard.*--shard K \(recorded: 0-2\)"):
        planning.pick_shard(portable.load_source(store, RUN_ID), None)


def test_plan_maps_inputs_outputs_labels_and_user_to_this_machine(tmp_path: Path) -> None:
    store, data = make_run(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in data.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    plan = planning.plan_replay(
        store, portable.load_source(store, RUN_ID), inputs={"data": str(copy)}, labels={"team": "x"}
    )
    inv = plan.inv
    assert inv.run_id == plan.run_id != RUN_ID and plan.run_id.startswith("job-repro-")
    assert inv.name == f"cx-{plan.run_id}-1"
    assert inv.labels["containerexec.run"] == plan.run_id
    assert inv.labels[LABEL_REPRO_OF] == RUN_ID and inv.labels["team"] == "x"
    sources = {m.name: m.source for m in inv.mounts}
    assert sources["data"] == str(copy)
    assert sources["out"] == str(store.run_dir(plan.run_id) / "outputs" / "out")
    assert inv.argv == plan.shard.invocation.argv
    assert inv.env == plan.shard.invocation.env


def test_changed_inputs_are_refused_listing_each_file(tmp_path: Path) -> None:
    store, data = make_run(tmp_path)
    (data / "a.txt").write_text("ALPHA\n")
    (data / "b.txt").write_text("bravo, longer\n")
    (data / "c.txt").write_text("new\n")
    source = portable.load_source(store, RUN_ID)
    with pytest.raises(InputsChanged) as info:
        planning.plan_replay(store, source)
    assert info.value.changes == [
        "changed  data/a.txt (same size, different content)",
        "changed  data/b.txt (size 6 -> 14 bytes)",
        "added    data/c.txt",
    ]
    assert "--ignore-input-changes" in str(info.value)
    (data / "a.txt").unlink()
    with pytest.raises(InputsChanged, match=r"removed  data/a\.txt"):
        planning.plan_replay(store, source)
    plan = planning.plan_replay(
        store, source, inputs={"data": str(data)}, ignore_input_changes=True
    )
    assert plan.inputs["data"] == str(data)


def test_a_missing_input_names_it_and_the_flag_to_pass(tmp_path: Path) -> None:
    store, data = make_run(tmp_path)
    source = portable.load_source(store, RUN_ID)
    for f in data.iterdir():
        f.unlink()
    data.rmdir()
    with pytest.raises(
        UsageError,
        match=r"input 'data' of run .* is missing: .* does not exist "
        r"here \(its recorded place\); copy the data here and pass --inputs "
        r"data=PATH",
    ):
        planning.plan_replay(store, source)
    with pytest.raises(UsageError, match=r"--inputs 'corpus': .* no such input \(inputs: data\)"):
        planning.plan_replay(store, source, inputs={"corpus": str(tmp_path)})


def test_print_command_parses_and_keeps_every_safe_flag(tmp_path: Path) -> None:
    store, data = make_run(tmp_path)
    source = portable.load_source(store, RUN_ID)
    plan = planning.plan_replay(store, source, strict=False, outputs_root=tmp_path / "o,ut")
    line = shlex.join(dockerscript.print_command(plan, "run"))
    argv = shlex.split(line)
    assert argv[:2] == ["docker", "run"]
    for flag in ("--read-only", "--init", "--rm"):
        assert flag in argv
    pairs = list(zip(argv, argv[1:], strict=False))
    for pair in [
        ("--network", "none"),
        ("--cap-drop", "ALL"),
        ("--memory", str(256 << 20)),
        ("--security-opt", "no-new-privileges"),
        ("--cpus", "1.5"),
        ("--env", "API_TOKEN"),
        ("--env", "MODE=it's; fine"),
        ("--workdir", "/work"),
        ("--mount", f"type=bind,source={data},target=/inputs/data,readonly"),
        ("--mount", f'type=bind,"source={tmp_path}/o,ut/out",target=/outputs/out'),
        ("--label", f"containerexec.run={plan.run_id}"),
    ]:
        assert pair in pairs, pair
    assert ("--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=1g") in pairs
    assert argv[argv.index(DIGEST) :] == [DIGEST, *plan.inv.argv]


def test_print_for_debug_publishes_on_localhost_only_and_wraps_python(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    plan = planning.plan_replay(store, portable.load_source(store, RUN_ID), strict=False)
    argv = dockerscript.print_command(plan, "debug", debug_port=7000)
    assert argv[argv.index("--publish") + 1] == "127.0.0.1:7000:5678"
    assert argv[argv.index("--network") + 1] == "bridge"
    assert argv[argv.index(DIGEST) + 1 :] == [
        "python3",
        "-u",
        "-m",
        "debugpy",
        "--listen",
        "0.0.0.0:5678",
        "--wait-for-client",
        "/app/job.py",
        "v1",
        "/inputs/data",
    ]


def test_debug_refuses_a_command_that_is_not_python(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    plan = planning.plan_replay(store, portable.load_source(store, RUN_ID), strict=False)
    plan = planning.Plan(**{**plan.__dict__, "inv": plan.inv.model_copy(update={"argv": ["bash"]})})
    with pytest.raises(UsageError, match="--debug needs a Python command.*use --shell"):
        planning.mode_invocation(plan, "debug")


def test_launch_config_attaches_to_localhost_and_maps_the_script_folder(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    plan = planning.plan_replay(store, portable.load_source(store, RUN_ID), strict=False)
    config = planning.launch_config(planning.mode_invocation(plan, "debug"), 7000)[
        "configurations"
    ][0]
    assert config["request"] == "attach"
    assert config["connect"] == {"host": "127.0.0.1", "port": 7000}
    assert config["pathMappings"][0]["remoteRoot"] == "/app"


def test_repro_print_cli_needs_no_engine_and_shows_the_digest(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)

    result = CliRunner().invoke(
        cli,
        ["--runs-dir", str(store.root), "repro", RUN_ID, "--print"],
        obj=App(runs_dir=store.root, engine_factory=no_engine),
    )
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.stdout)
    assert DIGEST in argv and "API_TOKEN" in argv
    assert "mkdir -p" in result.stdout and result.stdout.startswith("#!/bin/sh\n")


def test_shell_and_debug_together_are_a_usage_error(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    result = CliRunner().invoke(
        cli, ["--runs-dir", str(store.root), "repro", RUN_ID, "--shell", "--debug"]
    )
    assert result.exit_code == 2
    assert "Error: --shell and --debug exclude each other" in result.stderr


def test_secrets_come_from_the_environment_else_are_asked_for() -> None:
    asked: list[str] = []

    def ask(name: str) -> str:
        asked.append(name)
        return "typed"

    values = replay.secret_values(["A", "B"], {"A": "from-env"}, ask)
    assert values == {"A": "from-env", "B": "typed"} and asked == ["B"]


@pytest.mark.parametrize(
    ("recorded", "got", "same", "text"),
    [
        (3, 3, True, "reproduced: exit 3, same as recorded"),
        (3, 0, False, "not reproduced: recorded exit 3, got 0"),
        (None, 1, False, "not reproduced: recorded no exit status, got 1"),
    ],
)
def test_verdict_line(
    recorded: int | None, got: int, same: bool, text: str, tmp_path: Path
) -> None:
    store, _ = make_run(tmp_path)
    shard = store.load_shards(RUN_ID)[1].model_copy(update={"exit_code": recorded})
    attempt = Attempt(
        number=1,
        started_at=0,
        ended_at=1,
        exit_code=got,
        failure=None if got == 0 else Failure.EXIT_CODE,
    )
    assert replay.verdict(shard, attempt) == (same, text)


def test_a_cancelled_replay_is_not_a_reproduction_whatever_its_exit(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    shard = store.load_shards(RUN_ID)[1].model_copy(update={"exit_code": 143})
    attempt = Attempt(number=1, started_at=0, ended_at=1, exit_code=143, failure=Failure.CANCELLED)
    assert replay.verdict(shard, attempt) == (
        False,
        "not reproduced: recorded exit 143, and the replay was cancelled",
    )


def test_last_means_the_newest_run_that_is_not_itself_a_repro(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    original = store.load_run(RUN_ID)
    store.write_run(
        original.model_copy(
            update={
                "run_id": "job-repro-20260101-000001-000000",
                "repro_of": RUN_ID,
                "started_at": original.started_at + 10,
            }
        )
    )
    assert portable.load_source(store, "last").run.run_id == RUN_ID


def test_shard_record_of_an_export_keeps_its_invocation(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    export = portable.export_run(store, RUN_ID)
    again = planning.RunExport.model_validate(json.loads(export.model_dump_json()))
    assert again == export
    assert isinstance(again.shards[1], ShardRecord)


def test_files_past_the_hash_budget_are_recorded_and_checked_by_size_only(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"a" * 100)
    (data / "b.bin").write_bytes(b"b" * 100)
    entries = manifests.manifest(str(data), hash_limit_bytes=150)
    assert [(p, n, bool(h)) for p, n, h in entries] == [("a.bin", 100, True), ("b.bin", 100, False)]
    recorded = [FileEntry(path=p, size=n, sha256=h) for p, n, h in entries]
    (data / "b.bin").write_bytes(b"c" * 100)  # same size: not seen, by design
    assert manifests.input_changes("data", recorded, data, is_file=False) == []
    (data / "a.bin").write_bytes(b"z" * 100)  # hashed: seen
    assert manifests.input_changes("data", recorded, data, is_file=False) == [
        "changed  data/a.bin (same size, different content)"
    ]


def test_an_oom_is_not_reproduced_by_a_plain_sigkill(tmp_path: Path) -> None:
    store, _ = make_run(tmp_path)
    shard = store.load_shards(RUN_ID)[1].model_copy(
        update={"exit_code": 137, "failure": "oom", "oom_killed": True}
    )
    killed = Attempt(number=1, started_at=0, ended_at=1, exit_code=137, failure=Failure.KILLED)
    oom = Attempt(number=1, started_at=0, ended_at=1, exit_code=137, failure=Failure.OOM)
    assert replay.verdict(shard, killed) == (
        False,
        "not reproduced: recorded OOM-killed at the 256 MiB limit (exit 137), "
        "got killed from outside, not by a limit (exit 137)",
    )
    assert replay.verdict(shard, oom) == (
        True,
        "reproduced: OOM-killed at the recorded 256 MiB limit (exit 137)",
    )


def test_every_missing_input_is_named_at_once(tmp_path: Path) -> None:
    store, data = make_run(tmp_path)
    rec = store.load_shards(RUN_ID)[1]
    mounts = [*rec.invocation.mounts]
    mounts.insert(1, mounts[0].model_copy(update={"name": "more", "source": "/nowhere/more"}))
    rec = rec.model_copy(
        update={"invocation": rec.invocation.model_copy(update={"mounts": mounts})}
    )
    shutil.rmtree(data)
    with pytest.raises(UsageError) as info:
        planning.check_present(RUN_ID, rec, {})
    text = str(info.value)
    assert "inputs 'data', 'more' of run" in text and "are missing" in text
    assert "--inputs data=PATH --inputs more=PATH" in text


def test_a_glob_shard_that_mounted_its_own_file_replays_and_checks_that_file_only(
    tmp_path: Path,
) -> None:
    store, data = make_run(tmp_path)
    rec = store.load_shards(RUN_ID)[1]
    mounts = [
        Mount(
            kind="input",
            name="data",
            source=str(data / "b.txt"),
            target="/inputs/data/b.txt",
            read_only=True,
            is_file=True,
            shard_file="b.txt",
        ),
        *(m for m in rec.invocation.mounts if m.kind == "output"),
    ]
    inv = rec.invocation.model_copy(update={"mounts": mounts})
    store.write_shard(rec.model_copy(update={"invocation": inv}))
    (data / "a.txt").write_text("other shard's file changed\n")
    plan = planning.plan_replay(store, portable.export_run(store, RUN_ID), shard=1)
    assert plan.inputs == {"data": str(data)}
    assert [m.source for m in plan.inv.mounts if m.kind == "input"] == [str(data / "b.txt")]
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "b.txt").write_text("BRAVO\n")
    with pytest.raises(InputsChanged, match=r"changed  data \(b.txt\) \(same size"):
        planning.plan_replay(
            store, portable.export_run(store, RUN_ID), shard=1, inputs={"data": str(copy)}
        )


def test_a_shard_that_recorded_the_inputs_it_read_is_checked_against_them(
    tmp_path: Path,
) -> None:
    store, data = make_run(tmp_path)
    (data / "c.txt").write_text("new\n")
    seen = [FileEntry(path=p, size=n, sha256=h) for p, n, h in manifests.manifest(str(data))]
    rec = store.load_shards(RUN_ID)[1]
    store.write_shard(rec.model_copy(update={"input_manifests": {"data": seen}}))
    source = portable.export_run(store, RUN_ID)
    planning.plan_replay(store, source, shard=1)  # what shard 1 read: no difference
    with pytest.raises(InputsChanged, match="added    data/c.txt"):
        planning.plan_replay(store, source, shard=0)
