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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from containerexec.engine.base import Engine
from containerexec.engine.payload import docker_run_command
from containerexec.environment import images
from containerexec.errors import ImageError, InputsChanged, UsageError
from containerexec.labels import LABEL_REPRO_OF, LABEL_RUN
from containerexec.model.invocation import Invocation, Mount
from containerexec.run import returned
from containerexec.store import manifests
from containerexec.store.export import RunExport
from containerexec.store.records import ShardRecord
from containerexec.store.tree import RunStore, new_run_id

DEBUGPY_PORT = 5678
SHELL_SCRIPT = "if [ -x /bin/bash ]; then exec /bin/bash; fi; exec /bin/sh"
Mode = Literal["run", "shell", "debug"]


def pick_shard(source: RunExport, shard: int | None) -> ShardRecord:
    """Shard `shard` of the run, or its first failed shard."""
    by_index = {s.index: s for s in source.shards}
    run_id = source.run.run_id
    if shard is None:
        failed = sorted(i for i, s in by_index.items() if s.state == "failed")
        if not failed:
            raise UsageError(
                f"run '{run_id}' has no failed shard; pick one to replay with "
                f"--shard K (recorded: {_ranges(sorted(by_index)) or 'none'})"
            )
        return by_index[failed[0]]
    if shard not in by_index:
        raise UsageError(
            f"run '{run_id}' has no record of shard {shard}; recorded shards: "
            f"{_ranges(sorted(by_index)) or 'none'}"
        )
    return by_index[shard]


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
) -> Plan:
    """Re-map the recorded Invocation of a shard to this machine.

    Inputs come from `inputs` (NAME -> PATH), else from where they were recorded.
    With `strict`, each must exist and match its recorded manifest (InputsChanged
    otherwise, unless `ignore_input_changes`); `--print` plans without `strict`.
    Outputs go to fresh folders under `outputs_root`, by default the repro run's.
    """
    rec = pick_shard(source, shard)
    inv = rec.invocation
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
    used: dict[str, str] = {}
    for m in inv.mounts:
        if m.kind == "output":
            new_mounts.append(m.model_copy(update={"source": str(out_root / m.name)}))
            continue
        path = Path(given[m.name]).expanduser().absolute() if m.name in given else Path(m.source)
        folder = path
        if m.shard_file:  # a glob shard that mounted its own file alone: -i names the folder
            folder = path if m.name in given else Path(m.source[: -len(m.shard_file) - 1])
            path = folder / m.shard_file
        if strict:
            _check_present(source.run.run_id, m, path, m.name in given)
            # What this shard read: its own manifest when a resume accepted changed inputs.
            manifest = (rec.input_manifests or source.run.input_manifests).get(m.name)
            if manifest is not None and m.shard_file:
                manifest = [e for e in manifest if e.path == m.shard_file]
            if manifest is not None and not ignore_input_changes:
                changes += manifests.input_changes(m.name, manifest, path, m.is_file)
        used[m.name] = str(folder)
        new_mounts.append(m.model_copy(update={"source": str(path)}))
    if changes:
        raise InputsChanged(source.run.run_id, changes)
    user = f"{os.getuid()}:{os.getgid()}"
    notes = (
        []
        if user == inv.user
        else [f"runs as {user} (this user), not the recorded {inv.user}, so the mounts are usable"]
    )
    new_labels = {k: v for k, v in inv.labels.items() if k != LABEL_RUN}
    new_labels |= {**(labels or {}), LABEL_RUN: run_id, LABEL_REPRO_OF: source.run.run_id}
    new_inv = inv.model_copy(
        update={
            "run_id": run_id,
            "name": f"cx-{run_id}-{inv.shard_index}",
            "labels": new_labels,
            "mounts": new_mounts,
            "user": user,
        }
    )
    outputs = {
        m.name: m.source
        for m in new_mounts
        if m.kind == "output" and not returned.is_value_mount(m)
    }
    return Plan(source, rec, new_inv, run_id, used, outputs, notes)


def _check_present(run_id: str, m: Mount, path: Path, given: bool) -> None:
    kind = "file" if m.is_file else "directory"
    if not path.exists():
        where = f"'{path}' does not exist" + ("" if given else " here (its recorded place)")
        raise UsageError(
            f"input '{m.name}' of run '{run_id}' is missing: {where}; copy the "
            f"data here and pass --inputs {m.name}=PATH"
        )
    if path.is_file() != m.is_file:
        raise UsageError(
            f"input '{m.name}': '{path}' is not a {kind}, and the recorded input "
            f"is one; pass --inputs {m.name}=PATH to a {kind}"
        )


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


def print_command(plan: Plan, mode: Mode, *, debug_port: int = DEBUGPY_PORT) -> list[str]:
    """The plain `docker run` argv of a mode, for someone without containerexec."""
    inv = mode_invocation(plan, mode)
    return docker_run_command(
        inv,
        remove=True,
        interactive=mode == "shell",
        tty=mode == "shell",
        entrypoint="/bin/sh" if mode == "shell" else None,
        publish={DEBUGPY_PORT: debug_port} if mode == "debug" else None,
    )


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


def secret_values(
    names: list[str], environ: Mapping[str, str], ask: Callable[[str], str]
) -> dict[str, str]:
    """Each secret from the environment, else asked for; never stored anywhere."""
    return {n: environ[n] if n in environ else ask(n) for n in names}
