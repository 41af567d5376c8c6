"""Replay a recorded shard here: pull its image by digest, check its inputs, run it again.

The replay is the recorded Invocation with a new run id and name, its inputs
re-mapped to the data on this machine and fresh output folders, run through
the same `runner.run_invocation` as any run. A shell or a debugger session uses
the same container set-up with another command.
"""

from __future__ import annotations

import os
import posixpath
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from containerexec.engine.base import Engine
from containerexec.engine.payload import docker_run_command
from containerexec.environment import images
from containerexec.errors import EngineError, ImageError, InputsChanged, UsageError
from containerexec.labels import LABEL_REPRO_OF, LABEL_RUN
from containerexec.model.invocation import Invocation, Mount
from containerexec.run.executor import new_run_id, replace_record
from containerexec.run.logs import LineSink, LogSink
from containerexec.run.runner import Attempt, Failure, Tracker, classify, run_invocation
from containerexec.store import manifests
from containerexec.store.export import RunExport
from containerexec.store.records import FileEntry, RunRecord, RunStore, ShardRecord, ShardState

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


def input_changes(name: str, recorded: list[FileEntry], path: Path, is_file: bool) -> list[str]:
    """One line per file of input `name` at `path` that differs from its recorded manifest."""
    if is_file:
        # A renamed copy of a file input is fine: it is mounted under the recorded name.
        local = {(recorded[0].path if len(recorded) == 1 else path.name): path}
    else:
        local = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
    want = {e.path: e for e in recorded}
    lines = []
    for rel in sorted(want.keys() | local.keys()):
        where = f"{name}/{rel}" if not is_file else f"{name} ({rel})"
        if rel not in local:
            lines.append(f"removed  {where}")
        elif rel not in want:
            lines.append(f"added    {where}")
        else:
            size = local[rel].stat().st_size
            if size != want[rel].size:
                lines.append(f"changed  {where} (size {want[rel].size} -> {size} bytes)")
            elif want[rel].sha256 and manifests.sha256_file(local[rel]) != want[rel].sha256:
                lines.append(f"changed  {where} (same size, different content)")
    return lines


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
    out_root = outputs_root or store.run_dir(run_id) / "outputs"
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
        if strict:
            _check_present(source.run.run_id, m, path, m.name in given)
            manifest = source.run.input_manifests.get(m.name)
            if manifest is not None and not ignore_input_changes:
                changes += input_changes(m.name, manifest, path, m.is_file)
        used[m.name] = str(path)
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
    outputs = {m.name: m.source for m in new_mounts if m.kind == "output"}
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


def prepare_outputs(plan: Plan) -> None:
    for folder in plan.outputs.values():
        Path(folder).mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Outcome:
    """What a replay came to, and whether it showed the recorded exit status again."""

    attempt: Attempt
    record: RunRecord
    record_path: Path
    reproduced: bool
    verdict: str


def replay(
    engine: Engine,
    store: RunStore,
    plan: Plan,
    *,
    secrets: Mapping[str, str],
    tracker: Tracker | None = None,
    keep: bool = False,
    on_line: LineSink | None = None,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Run the planned Invocation through the runner, as any run, and record it."""
    with store.lock(plan.run_id):
        prepare_outputs(plan)
        record, base = _start(store, plan, "run", clock())
        sink = LogSink(
            store.log_path(plan.run_id, plan.inv.shard_index),
            on_line=on_line,
            redact=list(secrets.values()),
        )
        try:
            attempt = run_invocation(
                engine,
                plan.inv,
                secrets=secrets,
                log=sink,
                tracker=tracker or Tracker(),
                clock=clock,
                keep=keep,
            )
        finally:
            sink.finish()  # the runner closes it only once the container ran
        return _finish(store, plan, record, base, attempt, clock())


def interactive(
    engine: Engine,
    store: RunStore,
    plan: Plan,
    mode: Mode,
    *,
    secrets: Mapping[str, str],
    tty: bool,
    keep: bool = False,
    debug_port: int = DEBUGPY_PORT,
    clock: Callable[[], float] = time.time,
) -> Outcome | int:
    """A shell (returns its exit status) or a debug run (recorded, returns an Outcome)."""
    inv = mode_invocation(plan, mode)
    prepare_outputs(plan)
    if mode == "shell":
        return engine.run_interactive(
            inv, secrets=secrets, tty=tty, keep=keep, entrypoint="/bin/sh"
        )
    with store.lock(plan.run_id):
        record, base = _start(store, replace(plan, inv=inv), mode, clock())
        started = clock()
        code = engine.run_interactive(
            inv, secrets=secrets, tty=tty, keep=keep, publish={DEBUGPY_PORT: debug_port}
        )
        attempt = classify(
            Attempt(number=1, started_at=started, ended_at=clock(), exit_code=code),
            timed_out=False,
            cancelled=False,
            timeout_s=None,
            engine_error="",
        )
        return _finish(store, plan, record, base, attempt, clock())


def _start(store: RunStore, plan: Plan, mode: Mode, now: float) -> tuple[RunRecord, ShardRecord]:
    src = plan.source.run
    record = src.model_copy(
        update={
            "run_id": plan.run_id,
            "inputs": {**src.inputs, **plan.inputs},
            "outputs": plan.outputs,
            "shards_selected": [plan.shard.index],
            "max_parallel": 1,
            "state": "running",
            "exit_code": None,
            "counts": {},
            "started_at": now,
            "ended_at": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pipeline_run": None,
            "repro_of": src.run_id,
        }
    )
    store.write_run(record)
    base = ShardRecord(
        run_id=plan.run_id,
        index=plan.shard.index,
        value=plan.shard.value,
        state="running",
        invocation=plan.inv,
        log_path=str(store.log_path(plan.run_id, plan.shard.index)),
        message="" if mode == "run" else f"{mode} session: output not captured",
    )
    store.write_shard(base)
    return record, base


def _finish(
    store: RunStore, plan: Plan, record: RunRecord, base: ShardRecord, attempt: Attempt, now: float
) -> Outcome:
    state: ShardState = (
        "succeeded"
        if attempt.ok
        else "cancelled"
        if attempt.failure == Failure.CANCELLED
        else "failed"
    )
    store.write_shard(replace_record(base, state, [attempt], Path(base.log_path)))
    final = record.model_copy(
        update={
            "state": state,
            "exit_code": attempt.exit_code,
            "counts": {state: 1},
            "ended_at": now,
        }
    )
    path = store.write_run(final)
    same, text = verdict(plan.shard, attempt)
    return Outcome(attempt, final, path, same, text)


def verdict(recorded: ShardRecord, got: Attempt) -> tuple[bool, str]:
    """`reproduced: exit 3, same as recorded` or `not reproduced: recorded exit 3, got 0`."""
    want = "no exit status" if recorded.exit_code is None else f"exit {recorded.exit_code}"
    if got.failure == Failure.CANCELLED:
        return False, f"not reproduced: recorded {want}, and the replay was cancelled"
    if got.exit_code is None:
        why = (got.message.splitlines() or [""])[0]
        return False, f"not reproduced: recorded {want}, got no exit status ({got.failure}: {why})"
    if got.exit_code == recorded.exit_code:
        return True, f"reproduced: exit {got.exit_code}, same as recorded"
    return False, f"not reproduced: recorded {want}, got {got.exit_code}"


def stderr_comparison(recorded: ShardRecord, got: Attempt) -> str | None:
    """Whether the last line of stderr is the recorded one; None when neither has any."""
    want = recorded.stderr_tail[-1] if recorded.stderr_tail else None
    here = got.stderr_tail[-1] if got.stderr_tail else None
    if want is None and here is None:
        return None
    if want == here:
        return f"last line of stderr, same as recorded: {here}"
    return f"last line of stderr differs: recorded {want!r}, got {here!r}"


@dataclass
class Canceller:
    """Stops a replay's container on Ctrl-C or SIGTERM: SIGTERM, `grace_s`, then kill."""

    engine: Engine
    tracker: Tracker
    grace_s: float = 5.0
    signum: int | None = None

    def cancel(self, signum: int = signal.SIGINT) -> None:
        self.signum = self.signum or signum
        self.tracker.cancelled.set()
        for cid in self.tracker.running():
            threading.Thread(target=self._stop, args=(cid,), daemon=True).start()

    def _stop(self, cid: str) -> None:
        try:
            self.engine.stop(cid, grace_s=self.grace_s)
        except EngineError:
            pass  # the runner removes it, or reports the engine lost
