"""Names read from records and bundles are checked when they are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from containerexec.errors import RecordError
from containerexec.model.invocation import Invocation, Mount
from containerexec.model.names import check_relpath, check_run_id
from containerexec.store.records import ShardRecord, load_model

BAD_IDS = ["../../..", "a/b", "..", "x\nrm -rf ~", "", "-flag", "a..b", "a b", "é"]
BAD_PATHS = ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", "a\nb", "a\\b", ""]


@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_run_ids_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_run_id(value)


@pytest.mark.parametrize("value", ["wc-20261207-203412-a1b2c3", "wc-repro-20261207-203412-0f0f0f"])
def test_run_ids_the_project_makes_pass(value: str) -> None:
    assert check_run_id(value) == value


@pytest.mark.parametrize("value", BAD_PATHS)
def test_bad_relative_paths_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_relpath(value)


def test_good_relative_paths_pass() -> None:
    assert check_relpath("sub/b.txt") == "sub/b.txt"
    assert check_relpath("..hidden") == "..hidden"


def _inv(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "run_id": "wc-20261207-203412-a1b2c3",
        "module": "wc",
        "image": "sha256:" + "0" * 64,
        "argv": ["true"],
        "user": "0:0",
        "name": "cx-wc-20261207-203412-a1b2c3-0",
    }
    return base | over


@pytest.mark.parametrize(
    "over",
    [
        {"run_id": "../../.."},
        {"module": "../x"},
        {"name": "x\ny"},
        {
            "mounts": [
                {"kind": "input", "name": "../d", "source": "/d", "target": "/inputs/d"}
                | {"read_only": True}
            ]
        },
        {
            "mounts": [
                {"kind": "input", "name": "d", "source": "/d", "target": "/inputs/d"}
                | {"read_only": True, "shard_file": "../../etc/shadow"}
            ]
        },
    ],
)
def test_an_invocation_with_a_hostile_name_is_refused(over: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Invocation.model_validate(_inv(**over))


def test_a_valid_invocation_reads() -> None:
    mount = Mount(kind="input", name="d", source="/d", target="/inputs/d", read_only=True)
    inv = Invocation.model_validate(_inv(mounts=[mount.model_dump()]))
    assert inv.mounts[0].name == "d"


def test_a_shard_record_with_a_hostile_run_id_is_one_record_error(tmp_path: Path) -> None:
    rec = {
        "run_id": "../../..",
        "index": 0,
        "value": "",
        "state": "failed",
        "log_path": "x.log",
        "invocation": _inv(),
    }
    path = tmp_path / "000000.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="not a run id"):
        load_model(path, ShardRecord)


def test_the_mounts_containerexec_adds_itself_pass_the_name_check() -> None:
    from containerexec.model.names import INTERNAL_MOUNTS, check_mount_name
    from containerexec.run import returned

    assert returned.MOUNT_NAME in INTERNAL_MOUNTS
    for sub in ("ctl", "state", "stage", "links"):  # run/packing/batch.py's batch folders
        assert check_mount_name(f".batch-{sub}") == f".batch-{sub}"
    with pytest.raises(ValueError):
        check_mount_name(".hidden")


def test_a_record_nested_thousands_deep_is_one_untrusted_input_error(tmp_path: Path) -> None:
    from containerexec.errors import UntrustedInput

    path = tmp_path / "run.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UntrustedInput, match="nested too deeply"):
        load_model(path, ShardRecord)
