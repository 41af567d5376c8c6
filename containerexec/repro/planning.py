"""Planning a replay of a recorded shard here: which shard, its Invocation re-mapped to this
machine (inputs checked against the recorded manifest), a shell's or a debugger's variant
of it, the plain `docker run` line, and the exact image pulled by digest.

The replay itself runs as a Run of its own, through the same code as any run
(replay.py).
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from containerexec.engine.base import Engine
from containerexec.environment import images
from containerexec.errors import ImageError, InputsChanged, UntrustedInput, UsageError
from containerexec.labels import LABEL_REPRO_OF, LABEL_RUN
from containerexec.model.hostsafety import (
    VALUE_MOUNT,
    EnginePlaces,
    check_mount,
    host_path_refusal,
    mount_refusal,
    real_path,
)
from containerexec.model.invocation import Invocation, Mount
from containerexec.model.spec import ModuleSpec
from containerexec.run import returned
from containerexec.store import manifests
from containerexec.store.export import RunExport
from containerexec.store.records import FileEntry, ShardRecord, full
from containerexec.store.tree import RunStore, new_run_id

DEBUGPY_PORT = 5678
SHELL_SCRIPT = "if [ -x /bin/bash ]; then exec /bin/bash; fi; exec /bin/sh"
Mode = Literal["run", "shell", "debug"]


def pick_shard(source: RunExport, shard: int | None) -> ShardRecord:
    """Shard `shard` of the run, or its first failed shard, its Invocation whole (the env
    values the run record keeps put back)."""
    by_index = {s.index: s for s in source.shards}
    run_id = source.run.run_id
    if shard is None:
        failed = sorted(i for i, s in by_index.items() if s.state == "failed")
        if not failed:
            raise UsageError(
                f"run '{run_id}' has no failed shard; pick one to replay with "
                f"--shard K (recorded: {_ranges(sorted(by_index)) or 'none'})"
            )
        return full(by_index[failed[0]], source.run)
    if shard not in by_index:
        raise UsageError(
            f"run '{run_id}' has no record of shard {shard}; recorded shards: "
            f"{_ranges(sorted(by_index)) or 'none'}"
        )
    return full(by_index[shard], source.run)


def _ranges(indices: list[int]) -> str:
    parts: list[str] = []
    for i in indices:
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


@dataclass(frozen=True)
class Plan:
    """A replay decided but not run yet: the recorded shard and its re-mapped Invocation."""

    source: RunExport
    shard: ShardRecord
    inv: Invocation
    run_id: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    notes: list[str]
    # With --ignore-input-changes: what differed, and the manifests of what was read.
    changes: list[str] = field(default_factory=list)
    read_manifests: dict[str, list[FileEntry]] = field(default_factory=dict)


@dataclass(frozen=True)
class Grants:
    """What a replay may give a recorded Invocation beyond the safe defaults: each is a flag
    of `repro` the user passes knowingly (--allow-network, --allow-user)."""

    network: bool = False
    user: bool = False


NO_GRANTS = Grants()


def caller() -> str:
    """This process's uid:gid, which a replay runs as unless --allow-user."""
    return f"{os.getuid()}:{os.getgid()}"


def check_record(
    source: RunExport,
    rec: ShardRecord,
    *,
    mode: Mode = "run",
    grants: Grants = NO_GRANTS,
    engine_places: EnginePlaces | None = None,
) -> ModuleSpec:
    """Refuse a recorded shard that asks for more than replay grants; its module spec.

    Pure: nothing is read but the record and, for a recorded place that exists here,
    what it is. Each recorded mount must be a declared input or output of the module
    (by kind and name), of its declared kind, at its port's target, and pass the
    host-safety rule; network and another user need `grants`. Raises UntrustedInput
    (exit 2) with one line naming the shard, the mount or field, and the flag.
    """
    where = f"shard {rec.index} of run '{source.run.run_id}'"
    try:
        spec = ModuleSpec.model_validate(source.run.spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "spec"
        raise UntrustedInput(
            where, f"the recorded module spec is not valid ({field}: {first['msg']})"
        ) from None
    inv, seen = rec.invocation, set()
    for m in inv.mounts:
        refused = _undeclared(spec, inv, m) or mount_refusal(m, engine_places=engine_places)
        if refused is None and (m.kind, m.name) in seen:
            refused = "it is mounted twice"
        if refused:
            raise UntrustedInput(
                where,
                f"recorded {m.kind} mount '{m.name}' ({m.source} -> {m.target}): {refused}; "
                "replay refuses it and runs nothing (ask the sender for an unedited record)",
            )
        seen.add((m.kind, m.name))
    if inv.network and not grants.network and mode != "debug":
        raise UntrustedInput(
            where,
            "the record asks for a network (field 'network': true) and replay runs without "
            "one; pass --allow-network to grant it",
        )
    # Another recorded user is not refused: the replay runs as you (a colleague's uid is
    # the common case), and only --allow-user runs it as the recorded one.
    return spec


def _undeclared(spec: ModuleSpec, inv: Invocation, m: Mount) -> str | None:
    """Why recorded mount `m` is no mount the module declares, or None when it is one."""
    if m.kind == "output":
        if m.name in spec.outputs or (m.name == VALUE_MOUNT and returned.wanted(inv)):
            return None
        known = ", ".join(sorted(spec.outputs)) or "none"
        return f"module '{spec.name}' declares no such output (outputs: {known})"
    port = spec.inputs.get(m.name)
    if port is None or port.type not in ("file", "directory"):
        known = ", ".join(n for n, p in sorted(spec.inputs.items()) if p.type in _PATHS)
        return f"module '{spec.name}' declares no such file or folder input ({known or 'none'})"
    if port.type == "file" and (not m.is_file or m.shard_file):
        return "the module declares it a file"
    if port.type == "directory" and m.is_file != bool(m.shard_file):
        return "the module declares it a folder"
    return None


_PATHS = ("file", "directory")


def plan_replay(
    store: RunStore,
    source: RunExport,
    *,
    shard: int | None = None,
    inputs: Mapping[str, str] | None = None,
    strict: bool = True,
    ignore_input_changes: bool = False,
    outputs_root: Path | None = None,
    labels: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    mode: Mode = "run",
    grants: Grants = NO_GRANTS,
    engine_places: EnginePlaces | None = None,
) -> Plan:
    """Rebuild the recorded shard's Invocation for this machine.

    The record is checked first (check_record: nothing is written before). The
    mounts are rebuilt from the module's declared ports, never copied: inputs from
    `inputs` (NAME -> PATH: -i, or the bundle's unpacked files), else from their
    recorded place when it passes the host-safety rule; outputs into fresh folders
    under `outputs_root`, by default the repro run's. With `strict`, each input must
    exist and match its recorded manifest (InputsChanged otherwise, unless
    `ignore_input_changes`); `--print` plans without `strict`. It runs as this user
    and without a network unless `grants` say otherwise.
    """
    rec = pick_shard(source, shard)
    check_record(source, rec, mode=mode, grants=grants, engine_places=engine_places)
    inv = rec.invocation
    where = f"shard {rec.index} of run '{source.run.run_id}'"
    run_id = new_run_id(f"{source.run.module}-repro", clock())
    out_root = outputs_root or store.default_outputs(run_id)
    given = dict(inputs or {})
    known = sorted(m.name for m in inv.mounts if m.kind == "input")
    for name in given:
        if name not in known:
            raise UsageError(
                f"--inputs '{name}': shard {rec.index} of run "
                f"'{source.run.run_id}' has no such input (inputs: "
                f"{', '.join(known) or 'none'})"
            )
    new_mounts: list[Mount] = []
    changes: list[str] = []
    read: dict[str, list[FileEntry]] = {}
    used: dict[str, str] = {}
    if strict:
        check_present(source.run.run_id, rec, given, engine_places=engine_places)
    for m in inv.mounts:
        if m.kind == "output":
            new_mounts.append(
                Mount(
                    kind="output",
                    name=m.name,
                    source=str(out_root / m.name),
                    target=m.target,  # checked: its port's place
                    read_only=False,
                )
            )
            continue
        folder, path = _input_place(m, given, engine_places=engine_places, where=where)
        # What this shard read: its own manifest when a resume accepted changed inputs.
        manifest = (rec.input_manifests or source.run.input_manifests).get(m.name)
        if manifest is not None and m.shard_file:
            manifest = [e for e in manifest if e.path == m.shard_file]
        recorded_place = m.name not in given
        if recorded_place and manifest is None:
            # Read only what the record already lists, so a record cannot ask for a folder
            # of this machine (its /etc, someone's home) whose content it does not know.
            raise UntrustedInput(
                where,
                f"input '{m.name}' would be read at its recorded place '{path}', and the "
                f"record lists none of its files to check it against; pass -i {m.name}=PATH",
            )
        if strict and manifest is not None:
            differ = manifests.input_changes(m.name, manifest, path, m.is_file)
            if differ and recorded_place and ignore_input_changes:
                raise UntrustedInput(
                    where,
                    f"input '{m.name}' at its recorded place '{path}' is not what the record "
                    f"lists ({differ[0].strip()}, {len(differ)} in all); to run on other "
                    f"data, pass -i {m.name}=PATH --ignore-input-changes",
                )
            changes += differ
            if differ:  # the record says what this replay read, not what the original did
                read[m.name] = [
                    FileEntry(path=p, size=n, sha256=h) for p, n, h in manifests.manifest(str(path))
                ]
        used[m.name] = str(folder)
        new_mounts.append(
            Mount(
                kind="input",
                name=m.name,
                source=str(path),
                target=m.target,
                read_only=True,
                is_file=m.is_file,
                shard_file=m.shard_file,
            )
        )
    for m in new_mounts:  # the one rule, on exactly what will be mounted
        check_mount(m, where=where, engine_places=engine_places, outputs_under=[out_root])
    if changes and not ignore_input_changes:
        raise InputsChanged(source.run.run_id, changes)
    user = inv.user if grants.user else caller()
    new_labels = {k: v for k, v in inv.labels.items() if k != LABEL_RUN}
    new_labels |= {**(labels or {}), LABEL_RUN: run_id, LABEL_REPRO_OF: source.run.run_id}
    new_inv = inv.model_copy(
        update={
            "run_id": run_id,
            "name": f"cx-{run_id}-{inv.shard_index}",
            "labels": new_labels,
            "mounts": new_mounts,
            "user": user,
            "network": inv.network and grants.network,
        }
    )
    outputs = {
        m.name: m.source
        for m in new_mounts
        if m.kind == "output" and not returned.is_value_mount(m)
    }
    return Plan(source, rec, new_inv, run_id, used, outputs, [], changes, read)


def grant_lines(plan: Plan, mode: Mode) -> list[str]:
    """What the replay grants, one short block: user, network, each mount (ro/rw, host path)."""
    inv = mode_invocation(plan, mode)
    you = caller()
    user = "you" if inv.user == you else "the recorded user, --allow-user"
    if inv.user == you and plan.shard.invocation.user != you:
        user = f"you; the record says {plan.shard.invocation.user}, --allow-user runs as that"
    if mode == "debug":
        network = "on, for --debug's port published on 127.0.0.1 only (--debug asks for it)"
    else:
        network = "on (--allow-network)" if inv.network else "off"
    lines = [f"user:    {inv.user} ({user})", f"network: {network}"]
    for m in inv.mounts:
        rw = "ro" if m.read_only else "rw"
        lines.append(f"mount:   {rw} {m.source} -> {m.target}")
    return lines


def missing_inputs(rec: ShardRecord, given: Mapping[str, str]) -> list[str]:
    """The names of the shard's inputs that are neither given nor at their recorded place."""
    return [
        m.name
        for m in rec.invocation.mounts
        if m.kind == "input" and m.name not in given and not Path(m.source).exists()
    ]


def _input_place(
    m: Mount,
    given: Mapping[str, str],
    *,
    engine_places: EnginePlaces | None = None,
    where: str = "",
) -> tuple[Path, Path]:
    """(the input as -i names it or the record has it, what the shard mounts): a glob
    shard that mounted its own file alone is given its folder. Both pass the host-safety
    rule before anything looks at them: UsageError for a given path (as `run -i`),
    UntrustedInput for a recorded one."""
    mine = m.name in given
    path = Path(given[m.name]).expanduser().absolute() if mine else Path(m.source)
    if not m.shard_file:
        folder = path
    else:
        folder = path if mine else Path(m.source[: -len(m.shard_file) - 1])
        path = folder / m.shard_file
    for p in dict.fromkeys((folder, path)):
        refused = host_path_refusal(real_path(p), engine_places=engine_places)
        if refused and mine:
            raise UsageError(f"--inputs {m.name}: {refused}")
        if refused:
            raise UntrustedInput(
                where or m.name,
                f"input '{m.name}' at its recorded place: {refused} (or -i {m.name}=PATH)",
            )
    return folder, path


def check_present(
    run_id: str,
    rec: ShardRecord,
    given: Mapping[str, str],
    *,
    engine_places: EnginePlaces | None = None,
) -> None:
    """Every input of the shard is here and of its recorded kind; else one error naming all."""
    missing, wrong = [], []
    where = f"shard {rec.index} of run '{run_id}'"
    for m in rec.invocation.mounts:
        if m.kind != "input":
            continue
        _, path = _input_place(m, given, engine_places=engine_places, where=where)
        kind = "file" if m.is_file else "directory"
        if not path.exists():
            where = "" if m.name in given else " here (its recorded place)"
            missing.append((m.name, f"'{path}' does not exist{where}"))
        elif path.is_file() != m.is_file:
            wrong.append(f"input '{m.name}': '{path}' is not a {kind}, and the recorded one is")
    if missing:
        names = ", ".join(f"'{n}'" for n, _ in missing)
        flags = " ".join(f"--inputs {n}=PATH" for n, _ in missing)
        raise UsageError(
            f"input{'s' if len(missing) > 1 else ''} {names} of run '{run_id}' "
            f"{'are' if len(missing) > 1 else 'is'} missing: "
            f"{'; '.join(w for _, w in missing)}; copy the data here and pass {flags}"
            + "".join(f"\n{w}" for w in wrong)
        )
    if wrong:
        raise UsageError("; ".join(wrong) + "; pass --inputs NAME=PATH of the recorded kind")


def mode_invocation(plan: Plan, mode: Mode) -> Invocation:
    """The Invocation a mode runs: as recorded, a shell, or the command under debugpy."""
    inv = plan.inv
    if mode == "shell":
        return inv.model_copy(update={"argv": ["-c", SHELL_SCRIPT]})
    if mode == "debug":
        prog = posixpath.basename(inv.argv[0])
        if not prog.startswith("python"):
            raise UsageError(
                f"--debug needs a Python command, and shard {inv.shard_index} runs "
                f"'{inv.argv[0]}'; use --shell to get inside its container"
            )
        opts, rest = _python_options(inv.argv[1:])
        argv = [
            inv.argv[0],
            *opts,
            "-m",
            "debugpy",
            "--listen",
            f"0.0.0.0:{DEBUGPY_PORT}",
            "--wait-for-client",
            *rest,
        ]
        # Publishing the port needs a network; it is published on 127.0.0.1 only.
        return inv.model_copy(update={"argv": argv, "network": True})
    return inv


def _python_options(args: list[str]) -> tuple[list[str], list[str]]:
    """Split `python3 [options] script|-m mod|-c code ...` after argv[0] at the target."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-m", "-c", "-"):
        i += 2 if args[i] in ("-W", "-X") else 1
    return args[:i], args[i:]


def launch_config(inv: Invocation, port: int) -> dict[str, Any]:
    """A VS Code launch.json that attaches to the debug container of `inv` on 127.0.0.1:port."""
    target = (
        inv.argv[inv.argv.index("--wait-for-client") + 1 :]
        if "--wait-for-client" in inv.argv
        else []
    )
    script = target[0] if target and target[0] not in ("-m", "-c") else ""
    remote = posixpath.dirname(script) if script.startswith("/") else inv.workdir or "/"
    return {
        "version": "0.2.0",
        "configurations": [
            {
                "name": f"containerexec: {inv.module} shard {inv.shard_index}",
                "type": "debugpy",
                "request": "attach",
                "connect": {"host": "127.0.0.1", "port": port},
                "pathMappings": [{"localRoot": "${workspaceFolder}", "remoteRoot": remote}],
                "justMyCode": False,
            }
        ],
    }


def ensure_image(
    engine: Engine,
    plan: Plan,
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> Literal["present", "pulled"]:
    """Make the run's exact image available here: pulled by digest, whatever its tag says now."""
    ref, module = plan.inv.image, plan.source.run.module
    if engine.inspect_image(ref) is not None:
        return "present"
    if "@sha256:" not in ref:
        raise ImageError(
            module,
            ref,
            "the run used a locally built image that was never "
            "pushed, and it is not on this engine; rebuild it from the module's "
            "spec, or push it to a registry this engine can reach",
        )
    images.pull_with_retries(engine, module, ref, sleep=sleep)  # its error says what next
    return "pulled"
