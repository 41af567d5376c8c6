"""Replay rebuilds its mounts from the module's declared ports and grants nothing a record
asks for beyond the safe defaults unless a flag says so (repro/planning.py); pure, no engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from containerexec.errors import InputsChanged, UntrustedInput, UsageError
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Mount
from containerexec.repro import planning
from containerexec.store import export as portable
from containerexec.store.export import RunExport
from containerexec.store.tree import RunStore

from .test_repro_offline import RUN_ID, make_run

ME = f"{os.getuid()}:{os.getgid()}"
ENGINE_ROOT = EnginePlaces(
    data_root=Path("/var/lib/docker"), sockets=("/var/run/docker.sock", "/run/docker.sock")
)


def recorded(tmp_path: Path) -> tuple[RunStore, RunExport, Path]:
    """An honest run whose shard 1 failed, over a folder `data`, as an export holds it."""
    store, data = make_run(tmp_path)
    return store, portable.load_source(store, RUN_ID), data


def edited(source: RunExport, change: Callable[[dict[str, Any]], None]) -> RunExport:
    """The export with its shard's invocation (as JSON) changed as a sender could."""
    data = source.model_dump(mode="json")
    change(data["shards"][1]["invocation"])
    return RunExport.model_validate(data)


def plan(store: RunStore, source: RunExport, **kw: Any) -> planning.Plan:
    return planning.plan_replay(store, source, engine_places=ENGINE_ROOT, **kw)


def test_an_honest_record_is_rebuilt_from_the_declared_ports(tmp_path: Path) -> None:
    store, source, data = recorded(tmp_path)
    p = plan(store, source)
    mounts = {m.name: m for m in p.inv.mounts}
    assert set(mounts) == {"data", "out"}
    assert mounts["data"] == Mount(
        kind="input", name="data", source=str(data), target="/inputs/data", read_only=True
    )
    assert mounts["out"].source == str(store.default_outputs(p.run_id) / "out")
    assert "/staging/out" not in repr(p.inv.mounts)  # the recorded output place
    assert p.inv.user == ME and not p.inv.network
    lines = planning.grant_lines(p, "run")
    assert lines[:2] == [f"user:    {ME} (you)", "network: off"]
    assert f"mount:   ro {data} -> /inputs/data" in lines
    assert f"mount:   rw {store.default_outputs(p.run_id) / 'out'} -> /outputs/out" in lines


def _add(mount: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda inv: inv["mounts"].append(mount)


def _data(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda inv: inv["mounts"][0].update(fields)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            _add(
                {
                    "kind": "input",
                    "name": "sock",
                    "source": "/var/run/docker.sock",
                    "target": "/inputs/sock",
                    "read_only": True,
                }
            ),
            "recorded input mount 'sock' (/var/run/docker.sock -> /inputs/sock): module 'job' "
            "declares no such file or folder input (data)",
        ),
        (
            _add(
                {
                    "kind": "output",
                    "name": "loot",
                    "source": "/home",
                    "target": "/outputs/loot",
                    "read_only": False,
                }
            ),
            "module 'job' declares no such output (outputs: out)",
        ),
        (
            _add(
                {
                    "kind": "input",
                    "name": "n",
                    "source": "/",
                    "target": "/inputs/n",
                    "read_only": True,
                }
            ),
            "declares no such file or folder input",
        ),
        (_data(source="/var/run/docker.sock"), "is the engine's socket"),
        (_data(source="/proc/1"), "in the host's /proc"),
        (_data(source="/var/lib/docker/volumes"), "inside the engine's data folder"),
        (_data(read_only=False), "asks to be writable"),
        (_data(target="/bin"), "an input goes at /inputs/data, not '/bin'"),
        (_data(is_file=True), "the module declares it a folder"),
    ],
)
def test_an_edited_mount_is_refused_in_one_line_naming_it(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], said: str
) -> None:
    store, source, _ = recorded(tmp_path)
    with pytest.raises(UntrustedInput) as info:
        plan(store, edited(source, change))
    text = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in text, text
    assert text.startswith(f"shard 1 of run '{RUN_ID}': ") and said in text, text
    assert store.ids() == [RUN_ID]  # nothing written


def test_a_twice_mounted_input_is_refused(tmp_path: Path) -> None:
    store, source, _ = recorded(tmp_path)
    twice = edited(source, lambda inv: inv["mounts"].append(dict(inv["mounts"][0])))
    with pytest.raises(UntrustedInput, match="mounted twice"):
        plan(store, twice)


def test_a_recorded_place_the_record_lists_no_files_of_is_never_read(tmp_path: Path) -> None:
    """An input pointed at /etc (or anyone's home) with its manifest dropped: refused."""
    store, source, _ = recorded(tmp_path)
    hostile = edited(source, _data(source="/etc"))
    hostile = hostile.model_copy(
        update={"run": hostile.run.model_copy(update={"input_manifests": {}})}
    )
    with pytest.raises(UntrustedInput, match=r"recorded place '/etc', and the record lists none"):
        plan(store, hostile)
    with pytest.raises(UntrustedInput, match="lists none"):
        plan(store, hostile, strict=False)  # --print too
    # Kept: its content is not what the record lists, whatever --ignore-input-changes says.
    kept = edited(source, _data(source="/etc"))
    with pytest.raises(InputsChanged):
        plan(store, kept)
    with pytest.raises(UntrustedInput, match="recorded place '/etc' is not what the record"):
        plan(store, kept, ignore_input_changes=True)


def test_inputs_given_here_pass_the_run_i_rules(tmp_path: Path) -> None:
    store, source, data = recorded(tmp_path)
    with pytest.raises(UsageError, match="--inputs data: '/proc' is in the host's /proc"):
        plan(store, source, inputs={"data": "/proc"})
    hostile = edited(source, _data(source="/etc"))
    p = plan(store, hostile, inputs={"data": str(data)})  # -i replaces the recorded place
    assert {m.name: m.source for m in p.inv.mounts}["data"] == str(data)


def test_network_is_granted_only_by_allow_network_or_debug(tmp_path: Path) -> None:
    store, source, _ = recorded(tmp_path)
    asks = edited(source, lambda inv: inv.update(network=True))
    with pytest.raises(UntrustedInput) as info:
        plan(store, asks)
    assert "field 'network'" in str(info.value) and "--allow-network" in str(info.value)
    assert plan(store, asks, grants=planning.Grants(network=True)).inv.network
    debug = plan(store, asks, mode="debug")
    assert "for --debug's port" in planning.grant_lines(debug, "debug")[1]
    assert planning.mode_invocation(debug, "debug").network


def test_another_recorded_user_runs_as_you_unless_allow_user(tmp_path: Path) -> None:
    store, source, _ = recorded(tmp_path)
    other = f"{os.getuid() + 1}:0"
    asks = edited(source, lambda inv: inv.update(user=other))
    mine = plan(store, asks)  # a colleague's record: it runs as you, and says so
    me = f"{os.getuid()}:{os.getgid()}"
    assert mine.inv.user == me
    assert planning.grant_lines(mine, "run")[0] == (
        f"user:    {me} (you; the record says {other}, --allow-user runs as that)"
    )
    p = plan(store, asks, grants=planning.Grants(user=True))
    assert p.inv.user == other
    assert (
        planning.grant_lines(p, "run")[0] == f"user:    {other} (the recorded user, --allow-user)"
    )


def test_the_returned_value_mount_is_declared_only_for_modules_that_return(
    tmp_path: Path,
) -> None:
    store, source, _ = recorded(tmp_path)
    value = {
        "kind": "output",
        "name": ".returned",
        "source": "/sender/staging/.returned",
        "target": "/outputs/.containerexec-returned",
        "read_only": False,
    }
    with pytest.raises(UntrustedInput, match="no such output"):
        plan(store, edited(source, _add(value)))

    def returns(inv: dict[str, Any]) -> None:
        inv["mounts"].append(value)
        inv["env"]["CONTAINEREXEC_RETURN_FILE"] = "/outputs/.containerexec-returned/value.json"

    p = plan(store, edited(source, returns))
    mount = {m.name: m for m in p.inv.mounts}[".returned"]
    assert mount.source == str(store.default_outputs(p.run_id) / ".returned")
    assert ".returned" not in p.outputs
