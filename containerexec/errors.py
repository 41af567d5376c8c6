"""The errors containerexec raises; each carries the facts as fields and renders them.

    ContainerExecError
      SpecError(path, problems)           -- exit 2
        PipelineError(path, problems)     -- cycles, unknown jobs or outputs
      UsageError(message)                 -- bad flags or bindings, exit 2
      EngineError(operation, container, image, status_code)  -- API errors
        EngineUnavailable(socket, reason) -- no daemon answers
        ImageError(module, ref)
          BuildError(module, ref, step, log_tail)
          PullError(module, ref, answer, failure, attempts)
      PackageError(module, package, platform, lock_path, changes)  -- environment.python
        (engine/base.py: WaitTimeout, EngineLost, StartFailed)
      RunError
        ShardFailed(module, run_id, shard, image, argv, returncode, failure, log_path, ...)
        RunLocked(run_id, pid)
          OutputLocked(output, place, run_id, pid) -- another run writes to that -o place
        InputsChanged(run_id, changes)
      RecordError(path, schema_version)
        UntrustedInput(path)             -- a record, export or bundle that is malformed or
                                            asks for what replay does not grant: exit 2

The CLI maps these to `Error: ...` on stderr; `exit_code` says which status. Only the
CLI picks exit statuses; a library caller gets these exceptions and their fields.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Self


class ContainerExecError(Exception):
    """Base of every error containerexec raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located in its file."""

    path: str
    line: int
    col: int
    loc: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        loc = f" {self.loc}:" if self.loc else ""
        return f"{where}:{loc} {self.message}"


class SpecError(ContainerExecError):
    """A spec (module or pipeline) is invalid; lists every problem at once."""

    exit_code = 2

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.path}: {n} problem{'s' if n != 1 else ''}; nothing was run."
        return "\n".join([head, *(str(p) for p in self.problems)])


class PipelineError(SpecError):
    """A pipeline's graph is invalid (cycles, dangling references, type mismatches)."""


class UsageError(ContainerExecError):
    """A flag, binding or argument given on the command line is wrong."""

    exit_code = 2


class EngineError(ContainerExecError):
    """The container engine refused or failed a request.

    The facts are fields, each None when the engine adapter did not know it:
    `operation` is the request ("create", "wait for", "list containers"),
    `container` and `image` what it concerned, `status_code` the engine's HTTP
    status. `message` is the rest, usually what the engine answered.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        container: str | None = None,
        image: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.message = message
        self.operation = operation
        self.container = container
        self.image = image
        self.status_code = status_code
        super().__init__(message)

    def __str__(self) -> str:
        subject = " ".join(
            part
            for part in (
                self.operation,
                f"container {_short_id(self.container)}" if self.container else None,
                f"image '{self.image}'" if self.image else None,
            )
            if part
        )
        return f"{subject}: {self.message}" if subject else self.message


def _short_id(container: str) -> str:
    """A container ID as docker shows it (12 digits); a container name stays whole."""
    is_id = len(container) == 64 and all(c in "0123456789abcdef" for c in container)
    return container[:12] if is_id else container


class EngineUnavailable(EngineError):
    """No container engine answers (Docker, unless `engine` names another)."""

    def __init__(
        self,
        socket: str,
        reason: str,
        *,
        operation: str | None = None,
        engine: str = "Docker",
        advice: str | None = None,
    ) -> None:
        self.socket = socket
        self.reason = reason
        self.engine = engine
        self.advice = advice
        super().__init__(reason, operation=operation)

    def __str__(self) -> str:
        advice = self.advice or (
            "Start one ('make engine' in the containerexec checkout, or 'dockerd &' as root), "
            "or point DOCKER_HOST at a running engine"
        )
        return f"No {self.engine} engine answers at {self.socket} ({self.reason}). {advice}."


class ImageError(EngineError):
    """An image could not be found, built, pulled or pushed.

    `module` is None (or "") where it is not known, as in the engine adapter, which
    sees images but not modules; the layer that knows fills it in with `with_module`.
    """

    def __init__(
        self,
        module: str | None,
        ref: str,
        message: str,
        *,
        operation: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.module = module
        self.ref = ref
        super().__init__(message, operation=operation, image=ref, status_code=status_code)

    def with_module(self, module: str | None) -> Self:
        """The same error naming `module`: a copy, so the engine's original stays as raised."""
        return self._but(module=module)

    def _but(self, **fields: object) -> Self:
        # Not copy.copy: that rebuilds an exception from `args`, which are not our
        # __init__'s parameters. The rendering reads fields, so copying them is enough.
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__, **fields)
        new.args = self.args
        return new

    def __str__(self) -> str:
        where = f"module '{self.module}': " if self.module else ""
        return f"{where}image '{self.ref}': {self.detail()}"

    def detail(self) -> str:
        return self.message


class BuildError(ImageError):
    """`docker build` failed; carries the failing step and the end of its log."""

    def __init__(
        self,
        module: str | None,
        ref: str,
        message: str,
        log_tail: Sequence[str],
        *,
        step: str | None = None,
    ) -> None:
        self.log_tail = list(log_tail)
        self.step = step
        super().__init__(module, ref, message, operation="build")

    def detail(self) -> str:
        head = (
            f"build failed: {self.step}: {self.message}"
            if self.step
            else f"build failed: {self.message}"
        )
        tail = "\n".join(["-" * 60, *self.log_tail, "-" * 60]) if self.log_tail else ""
        return f"{head}\n{tail}".rstrip()


# What a registry's failed answer means, as the engine adapter's one classifier
# decides it (engine/dockererrors.py registry_failure); the wording lives in environment/images.py.
RegistryFailure = Literal[
    "not-found", "denied", "bad-name", "rejected", "unreachable", "unavailable"
]
TRANSIENT_FAILURES: frozenset[RegistryFailure] = frozenset({"unreachable", "unavailable"})


class PullError(ImageError):
    """A pull or push failed.

    `answer` is what the registry said, `failure` what that means (another try may
    help only when `transient`), `attempts` how many were made. `advice`, when set,
    is the whole message with the next step, worded by environment/images.py;
    `login`, the engine's own command to log in to the registry (`docker login HOST`),
    set by the engine adapter, which alone knows it.
    """

    def __init__(
        self,
        module: str | None,
        ref: str,
        answer: str,
        *,
        failure: RegistryFailure,
        operation: Literal["pull", "push"] = "pull",
        attempts: int = 1,
        advice: str | None = None,
        login: str | None = None,
    ) -> None:
        self.answer = answer
        self.login = login
        self.failure: RegistryFailure = failure
        self.attempts = attempts
        self.advice = advice
        super().__init__(module, ref, answer, operation=operation)

    @property
    def transient(self) -> bool:
        return self.failure in TRANSIENT_FAILURES

    def advised(self, *, module: str | None, attempts: int, advice: str) -> Self:
        """This error as finally reported: naming the module, the attempts and the next step."""
        return self._but(module=module, attempts=attempts, advice=advice)

    def detail(self) -> str:
        return self.advice or self.answer


class PackageError(ContainerExecError):
    """A module's Python packages could not be resolved, fetched, locked or installed.

    `package` and `platform` name what had no fitting file, where known; `lock_path`
    the lock concerned; `changes` how the declared packages differ from the lock
    ('+ six', '- regex'). The message ends with the next step.
    """

    def __init__(
        self,
        module: str | None,
        message: str,
        *,
        package: str | None = None,
        platform: str | None = None,
        lock_path: str | None = None,
        changes: Sequence[str] = (),
    ) -> None:
        self.module = module
        self.message = message
        self.package = package
        self.platform = platform
        self.lock_path = lock_path
        self.changes = list(changes)
        super().__init__(message)

    def __str__(self) -> str:
        where = f"module '{self.module}': " if self.module else ""
        return "\n".join([f"{where}{self.message}", *(f"  {c}" for c in self.changes)])


class RunError(ContainerExecError):
    """A run could not complete."""


RULE = "-" * 72


class ShardFailed(RunError):
    """A shard of a module run failed; its text is the failure report a user reads.

    First what failed, then the facts (image, argv, the end of its log, the log's
    path), last the next step: the repro command. `returncode` is the command's own
    exit status, as in subprocess.CalledProcessError (None when it never ran).
    """

    def __init__(
        self,
        *,
        module: str,
        run_id: str,
        shard: int,
        shard_count: int,
        image: str,
        argv: Sequence[str],
        returncode: int | None,
        failure: str,
        message: str,
        log_path: str,
        attempts: int = 1,
        is_array: bool = False,
        log_tail: Sequence[str] = (),
        stderr_tail: Sequence[str] = (),
        failed_shards: int = 1,
    ) -> None:
        self.module, self.run_id, self.shard, self.shard_count = module, run_id, shard, shard_count
        self.image, self.argv, self.returncode = image, list(argv), returncode
        self.failure, self.message, self.log_path = failure, message, log_path
        self.attempts, self.is_array, self.failed_shards = attempts, is_array, failed_shards
        self.log_tail, self.stderr_tail = list(log_tail), list(stderr_tail)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = (
            f"Shard {self.shard}/{self.shard_count} of module '{self.module}'"
            if self.shard_count > 1 or self.is_array
            else f"Module '{self.module}'"
        )
        plural = "s" if self.attempts != 1 else ""
        lines = [
            f"{where} failed: {self.message} ({self.failure}; {self.attempts} attempt{plural})",
            f"  image: {self.image}",
            f"  argv:  {shlex.join(self.argv)}",
        ]
        if self.log_tail:
            lines += [RULE, *self.log_tail, RULE]
        lines.append(f"  full log: {self.log_path}")
        if self.failed_shards > 1:
            lines.append(f"  ({self.failed_shards - 1} more shard(s) failed in this run)")
        lines.append(f"Reproduce here: {self.repro} [--shell]")
        return "\n".join(lines)

    @property
    def repro(self) -> str:
        """The command that replays this shard here (the report shows it too)."""
        flag = f" --shard {self.shard}" if self.shard_count > 1 else ""
        return f"containerexec repro {self.run_id}{flag}"


class RunLocked(RunError):
    """Another process holds the run."""

    def __init__(self, run_id: str, pid: int | None) -> None:
        self.run_id = run_id
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"run '{run_id}' is in progress, held by {holder}; "
            "wait for it to end, or stop it (kill -TERM PID) and resume."
        )


class OutputLocked(RunLocked):
    """Another run, in progress, writes to this -o place."""

    def __init__(self, output: str, place: str, run_id: str, pid: int | None) -> None:
        self.output = output
        self.place = place
        holder = f"process {pid}" if pid else "another process"
        stop = f"stop it (kill -TERM {pid})" if pid else "stop it"
        RunError.__init__(
            self,
            f"output '{output}' -> '{place}' is being written by run '{run_id}', in "
            f"progress, held by {holder}; wait for it to end, or {stop}, or choose "
            f"another place (-o {output}=NEW_PATH)",
        )
        self.run_id = run_id
        self.pid = pid


class InputsChanged(RunError):
    """Inputs given to a repro or a resume differ from the recorded manifest; `changes` lists
    the files."""

    def __init__(
        self,
        run_id: str,
        changes: Sequence[str],
        advice: str = "Point --inputs NAME=PATH at the recorded data, or pass "
        "--ignore-input-changes.",
    ) -> None:
        self.run_id = run_id
        self.changes = list(changes)
        super().__init__(
            "\n".join(
                [
                    f"the inputs here differ from those recorded for run '{run_id}'; "
                    "nothing was run:",
                    *(f"  {c}" for c in self.changes),
                    advice,
                ]
            )
        )


class RecordError(ContainerExecError):
    """A run record is missing, unreadable, or from a schema we do not know."""

    def __init__(self, path: str, message: str, schema_version: int | None = None) -> None:
        self.path = path
        self.schema_version = schema_version
        super().__init__(f"{path}: {message}")


class UntrustedInput(RecordError):
    """A record, export or bundle (perhaps someone else's) that is malformed, names a path
    outside its place, or asks for a mount or a right that replay does not grant."""

    exit_code = 2
