"""The errors containerexec raises; each carries the facts as fields and renders them.

    ContainerExecError
      SpecError(path, problems)           -- exit 2
        PipelineError(path, problems)     -- cycles, unknown jobs or outputs
      UsageError(message)                 -- bad flags or bindings, exit 2
      EngineError                         -- daemon unreachable, API errors
        EngineUnavailable(socket)
        ImageError(module, ref)
          BuildError(module, ref, log_tail)
          PullError(module, ref, answer)
      RunError
        ShardFailed(module, run_id, shard, image, argv, returncode, failure, log_path, ...)
        RunLocked(run_id, pid)
        InputsChanged(run_id, changes)
      RecordError(path, schema_version)

The CLI maps these to `Error: ...` on stderr; `exit_code` says which status. Only the
CLI picks exit statuses; a library caller gets these exceptions and their fields.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass


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
    """The Docker engine refused or failed a request."""


class EngineUnavailable(EngineError):
    """No Docker engine answers."""

    def __init__(self, socket: str, reason: str) -> None:
        self.socket = socket
        self.reason = reason
        super().__init__(
            f"No Docker engine answers at {socket} ({reason}). "
            "Start one ('make engine' in the containerexec checkout, or 'dockerd &' as root), "
            "or point DOCKER_HOST at a running engine."
        )


class ImageError(EngineError):
    """An image could not be found, built, pulled or pushed."""

    def __init__(self, module: str, ref: str, message: str) -> None:
        self.module = module
        self.ref = ref
        # module is "" for an image whose spec (and so its module name) is not read yet
        where = f"module '{module}': " if module else ""
        super().__init__(f"{where}image '{ref}': {message}")


class BuildError(ImageError):
    """`docker build` failed; carries the failing step and the end of its log."""

    def __init__(self, module: str, ref: str, message: str, log_tail: Sequence[str]) -> None:
        self.log_tail = list(log_tail)
        tail = "\n".join(["-" * 60, *self.log_tail, "-" * 60]) if self.log_tail else ""
        super().__init__(module, ref, f"build failed: {message}\n{tail}".rstrip())


class PullError(ImageError):
    """A pull or push failed; `answer` is what the registry said."""

    def __init__(self, module: str, ref: str, answer: str, *, transient: bool = False) -> None:
        self.answer = answer
        self.transient = transient
        super().__init__(module, ref, answer)


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
        flag = f" --shard {self.shard}" if self.shard_count > 1 else ""
        lines.append(f"Reproduce here: containerexec repro {self.run_id}{flag} [--shell]")
        return "\n".join(lines)


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


class InputsChanged(RunError):
    """Inputs given to a repro differ from the recorded manifest; `changes` lists the files."""

    def __init__(self, run_id: str, changes: Sequence[str]) -> None:
        self.run_id = run_id
        self.changes = list(changes)
        super().__init__(
            "\n".join(
                [
                    f"the inputs here differ from those recorded for run '{run_id}'; "
                    "nothing was run:",
                    *(f"  {c}" for c in self.changes),
                    "Point --inputs NAME=PATH at the recorded data, or pass "
                    "--ignore-input-changes.",
                ]
            )
        )


class RecordError(ContainerExecError):
    """A run record is missing, unreadable, or from a schema we do not know."""

    def __init__(self, path: str, message: str, schema_version: int | None = None) -> None:
        self.path = path
        self.schema_version = schema_version
        super().__init__(f"{path}: {message}")
