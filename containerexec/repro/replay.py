"""Running a planned replay: a one-shard Run of its own, recorded like any run, and the
verdict on whether it showed the recorded failure again.

The shard goes through `Run.run_shard` (staging, commit, records, cancel) with the
recorded Invocation instead of one resolved from the spec; `--debug` swaps the
runner's attempt for one attached to this terminal. A `--shell` is not a run: it
only borrows the container set-up.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from containerexec.engine.base import Engine
from containerexec.errors import EngineError
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.hostsafety import EnginePlaces
from containerexec.model.invocation import Invocation, Limits, output_filename
from containerexec.model.spec import ModuleSpec
from containerexec.repro.planning import DEBUGPY_PORT, Mode, Plan, mode_invocation
from containerexec.run.executor import Executor
from containerexec.run.results import RunResult
from containerexec.run.run import Interactive, Run
from containerexec.run.runner import Attempt, Failure, classify
from containerexec.store.records import RunRecord, ShardRecord


def secret_values(
    names: list[str], environ: Mapping[str, str], ask: Callable[[str], str]
) -> dict[str, str]:
    """Each secret from the environment, else asked for; never stored anywhere."""
    return {n: environ[n] if n in environ else ask(n) for n in names}


def engine_places(engine: Callable[[], Engine], *, required: bool) -> EnginePlaces | None:
    """The engine's data folder and sockets, which no mount may reach. `--print` runs without
    an engine here (not `required`): then they are unknown, and the rest of the rule (no
    socket, no /run, ...) still applies."""
    try:
        return engine().places()
    except EngineError:
        if required:
            raise
        return None


def start(
    executor: Executor,
    plan: Plan,
    mode: Mode = "run",
    *,
    keep: bool = False,
    tty: bool = False,
    debug_port: int = DEBUGPY_PORT,
) -> Run:
    """Start the planned shard as a Run of its own (mode 'run' or 'debug'), once, no retries."""
    src, index = plan.source.run, plan.shard.index
    spec = ModuleSpec.model_validate(src.spec)
    staging = executor.store.staging(plan.run_id, index)
    inv = mode_invocation(plan, mode)
    # Outputs are staged and committed into the planned folders, as in any run.
    mounts = [
        m.model_copy(update={"source": str(staging / m.name)}) if m.kind == "output" else m
        for m in inv.mounts
    ]
    inv = inv.model_copy(update={"mounts": mounts})
    outputs = {
        name: str(Path(folder) / _file_name(spec, src, name))
        if spec.outputs[name].type == "file"
        else folder
        for name, folder in plan.outputs.items()
    }
    record = src.model_copy(
        update={
            "run_id": plan.run_id,
            "inputs": {**src.inputs, **plan.inputs},
            "input_manifests": {**src.input_manifests, **plan.read_manifests},
            "outputs": outputs,
            "shards_selected": [index],
            "max_parallel": 1,
            "state": "running",
            "exit_code": None,
            "signal": None,
            "reason": None,
            "deadline_s": None,  # a replay (maybe a debug session) has no run deadline
            "counts": {},
            "started_at": executor.clock(),
            "ended_at": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pipeline_run": None,
            "repro_of": src.run_id,
            "user": inv.user,
        }
    )
    shard = Shard(index, plan.shard.value, src.shard_count)
    lock = executor.lock(plan.run_id)
    return executor.launch(
        spec,
        Bindings(record.inputs, outputs),
        record,
        [shard],
        [shard],
        lock=lock,
        invocation_for=lambda s: inv,
        keep=keep,
        once=True,
        interactive=_attached(executor, tty, keep, debug_port) if mode == "debug" else None,
    )


def _file_name(spec: ModuleSpec, src: RunRecord, name: str) -> str:
    """A file output's name as the recorded run wrote it."""
    return output_filename(spec, Bindings(src.inputs, src.outputs), name)


def _attached(executor: Executor, tty: bool, keep: bool, port: int) -> Interactive:
    """An attempt run attached to this terminal (docker run -it), classified as any attempt."""

    def attempt(inv: Invocation, base: Attempt) -> Attempt:
        code = executor.engine.run_interactive(
            inv, secrets=executor.secrets, tty=tty, keep=keep, publish={DEBUGPY_PORT: port}
        )
        ran = replace(base, ended_at=executor.clock(), exit_code=code)
        return classify(ran, timed_out=False, cancelled=False, timeout_s=None, engine_error="")

    return attempt


def debugger_connection(
    port: int, *, timeout_s: float = 30.0, sleep: Callable[[float], object] = time.sleep
) -> socket.socket | None:
    """A connection to what listens on 127.0.0.1:`port`, once something does within
    `timeout_s`; None if nothing does.

    docker's userland proxy accepts a connection even when nothing listens in the
    container, then closes it; a debug adapter keeps it open and waits for the client
    to speak first. So "answers" is: connected, and not closed within a short wait.
    The caller keeps the connection open until the debug run ends: debugpy's adapter
    exits when a client hangs up before its debuggee has connected to it, so a probe
    that hung up at once could end the session the user is waiting for.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            sleep(0.5)
            continue
        sock.settimeout(0.5)
        try:
            if sock.recv(1) != b"":
                return sock
        except TimeoutError:
            return sock
        except OSError:
            pass
        sock.close()
        sleep(0.5)
    return None


def shell(executor: Executor, plan: Plan, *, tty: bool, keep: bool = False) -> int:
    """An interactive shell in the shard's container set-up; returns its exit status.

    Not recorded: nothing the recorded command does runs unless the user runs it.
    """
    for folder in plan.outputs.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    inv = mode_invocation(plan, "shell")
    return executor.engine.run_interactive(
        inv, secrets=executor.secrets, tty=tty, keep=keep, entrypoint="/bin/sh"
    )


@dataclass(frozen=True)
class Outcome:
    """What a replay came to, and whether it showed the recorded failure again."""

    shard: ShardRecord
    record: RunRecord
    record_path: Path
    reproduced: bool
    verdict: str


def outcome(executor: Executor, plan: Plan, result: RunResult) -> Outcome:
    """Read the replayed shard's record and compare it with the recorded one."""
    shard = executor.store.load_shards(plan.run_id)[plan.shard.index]
    same, text = verdict(plan.shard, shard)
    if plan.changes:
        # Reproduced or not, it was not on the recorded data: say so, and on what.
        listed = "; ".join(c.split(None, 1)[1] if " " in c else c for c in plan.changes[:5])
        more = f" and {len(plan.changes) - 5} more" if len(plan.changes) > 5 else ""
        text += f" (on different inputs, --ignore-input-changes: {listed}{more})"
    return Outcome(shard, result.record, result.record_path, same, text)


def describe(failure: str | None, exit_code: int | None, limits: Limits) -> str:
    """How a shard ended, in words: 'exit 3', 'OOM-killed at the 64 MiB limit (exit 137)'."""
    code = "no exit status" if exit_code is None else f"exit {exit_code}"
    if failure == Failure.OOM:
        limit = _size(limits.memory_bytes) if limits.memory_bytes else "no"
        return f"OOM-killed at the {limit} limit ({code})"
    if failure == Failure.TIMEOUT:
        limit = f"{limits.timeout_s:g} s" if limits.timeout_s else "its"
        return f"timed out at the {limit} limit ({code})"
    if failure == Failure.KILLED:
        return f"killed from outside, not by a limit ({code})"
    if failure == Failure.SIGNAL and exit_code is not None:
        return f"killed by signal {exit_code - 128} ({code})"
    if failure in (None, Failure.EXIT_CODE):
        return code
    return f"{failure} ({code})"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def verdict(recorded: ShardRecord, got: Attempt | ShardRecord) -> tuple[bool, str]:
    """Whether the replay ended as the recorded shard did: the same failure kind (an OOM is
    not reproduced by any SIGKILL), the same exit status (a timeout's may differ: the stop
    decides it), and the same last line of stderr (else it says so)."""
    limits = recorded.invocation.limits
    want = describe(recorded.failure, recorded.exit_code, limits)
    if got.failure == Failure.CANCELLED:
        return False, f"not reproduced: recorded {want}, and the replay was cancelled"
    timeout = recorded.failure == Failure.TIMEOUT
    if got.exit_code is None and not (timeout and got.failure == Failure.TIMEOUT):
        why = (got.message.splitlines() or [""])[0]
        return False, f"not reproduced: recorded {want}, got no exit status ({got.failure}: {why})"
    same_kind = _kind(got.failure) == _kind(recorded.failure)
    if same_kind and (timeout or got.exit_code == recorded.exit_code):
        if recorded.failure in (None, Failure.EXIT_CODE):
            text = f"reproduced: exit {got.exit_code}, same as recorded"
        else:
            text = "reproduced: " + describe(got.failure, got.exit_code, limits).replace(
                "at the ", "at the recorded ", 1
            )
        if _last(recorded) and _last(got) and _last(recorded) != _last(got):
            text += ", but the last line of stderr differs"
        return True, text
    if got.failure in (None, Failure.EXIT_CODE) and recorded.failure in (None, Failure.EXIT_CODE):
        return False, f"not reproduced: recorded {want}, got {got.exit_code}"
    return (
        False,
        f"not reproduced: recorded {want}, got {describe(got.failure, got.exit_code, limits)}",
    )


def _kind(failure: str | None) -> str | None:
    # Older records name no failure for a plain non-zero exit.
    return None if failure == Failure.EXIT_CODE else failure


def _last(rec: Attempt | ShardRecord) -> str | None:
    return rec.stderr_tail[-1] if rec.stderr_tail else None


def stderr_comparison(recorded: ShardRecord, got: Attempt | ShardRecord) -> str | None:
    """Whether the last line of stderr is the recorded one; None when neither has any."""
    want = recorded.stderr_tail[-1] if recorded.stderr_tail else None
    here = got.stderr_tail[-1] if got.stderr_tail else None
    if want is None and here is None:
        return None
    if want == here:
        return f"last line of stderr, same as recorded: {here}"
    return f"last line of stderr differs: recorded {want!r}, got {here!r}"
