"""The plain-docker form of a planned replay: its `docker run` argv, and a POSIX sh script
that someone without containerexec can read and run.

Every value in it may come from someone else's record, so each word is shell-quoted and no
comment or message carries a control character.
"""

from __future__ import annotations

import re
import shlex

from containerexec.engine.payload import docker_run_command
from containerexec.errors import UntrustedInput
from containerexec.model.invocation import Invocation
from containerexec.repro.planning import DEBUGPY_PORT, Mode, Plan, mode_invocation
from containerexec.store.records import ShardRecord


def print_command(
    plan: Plan, mode: Mode, *, debug_port: int = DEBUGPY_PORT, name: str | None = None
) -> list[str]:
    """The plain `docker run` argv of a mode, for someone without containerexec."""
    inv = mode_invocation(plan, mode)
    return docker_run_command(
        inv,
        name=name,
        remove=True,
        interactive=mode == "shell",
        tty=mode == "shell",
        entrypoint="/bin/sh" if mode == "shell" else None,
        publish={DEBUGPY_PORT: debug_port} if mode == "debug" else None,
    )


def print_script(
    plan: Plan,
    mode: Mode,
    *,
    debug_port: int = DEBUGPY_PORT,
    image_step: str | None = None,
    grace_s: float = 5.0,
) -> str:
    """A POSIX sh script that replays the shard with plain docker: the image made present
    (`image_step`, else pulled by digest), each input checked, each output folder made, and
    the recorded limits kept, the timeout included (`timeout` around `docker run`, whose
    signal docker passes on to the container; the container is removed if it outlives the
    client).

    Every word is shell-quoted and no comment carries a control character: a record may
    come from someone else, and its values must reach docker as the words they are.
    """
    inv = mode_invocation(plan, mode)
    _check_words(plan.source.run.run_id, inv)
    src = plan.source.run
    lines = [
        "#!/bin/sh",
        _comment(
            f"Replays shard {inv.shard_index} of run {src.run_id} (module '{src.module}', "
            f"recorded: {_recorded(plan.shard)}) with plain docker."
        ),
        "set -u",
    ]
    ref = shlex.quote(inv.image)
    if image_step is None and "@sha256:" in inv.image:
        image_step = f"docker image inspect {ref} >/dev/null 2>&1 || docker pull {ref} || exit 1"
    elif image_step is None:
        missing = _say(
            f"image {inv.image} is not on this engine (a local build): export the run "
            "with --bundle FILE --with-image"
        )
        image_step = f"docker image inspect {ref} >/dev/null 2>&1 || {{ {missing}; exit 1; }}"
    lines.append(image_step)
    lines += _input_checks(plan, inv)
    for name in inv.secret_names:
        lines.append(
            f': "${{{name}:?export the secret {name} first (its value is never recorded)}}"'
        )
    folders = [m.source for m in inv.mounts if m.kind == "output"]  # the value folder too
    if folders:  # made last, so a script that stops early leaves nothing behind
        lines.append(shlex.join(["mkdir", "-p", "--", *folders]) + " || exit 1")
    run = shlex.join(print_command(plan, mode, debug_port=debug_port, name=inv.name))
    timeout = inv.limits.timeout_s if mode == "run" else None
    if timeout:
        lines += [
            f"timeout --kill-after={grace_s:g} {timeout:g} {run}",
            "status=$?",
            'if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then',
            f"  docker rm -f {shlex.quote(inv.name)} >/dev/null 2>&1",
            f'  echo "timed out after the recorded {timeout:g} s (exit $status)" >&2',
            "fi",
            'exit "$status"',
        ]
    else:
        lines.append(f"exec {run}")
    return "\n".join(lines) + "\n"


_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _recorded(rec: ShardRecord) -> str:
    exit_status = f"exit {rec.exit_code}" if rec.exit_code is not None else "no exit status"
    if rec.failure in (None, "exit_code"):
        return exit_status
    return f"{rec.failure}, {exit_status}"


def _check_words(run_id: str, inv: Invocation) -> None:
    """Refuse what no docker word can carry intact: a secret name that is no variable name
    (it is expanded by the script), an env or label key with `=` (docker splits there)."""
    where = f"run '{run_id}' shard {inv.shard_index}"
    for name in inv.secret_names:
        if not _SECRET_NAME.fullmatch(name):
            raise UntrustedInput(
                where,
                f"secret name {name!r} is not an environment variable name; "
                "the record was edited or is not a containerexec record",
            )
    for what, keys in (("environment variable", inv.env), ("label", inv.labels)):
        for key in keys:
            if not key or "=" in key or "\0" in key:
                raise UntrustedInput(
                    where,
                    f"{what} {key!r} has no name or holds '=', which docker cannot pass "
                    "intact; the record was edited or is not a containerexec record",
                )


def _input_checks(plan: Plan, inv: Invocation) -> list[str]:
    """One line per input: stop with exit 2, naming it, when it is not here as recorded."""
    lines = []
    for m in inv.mounts:
        if m.kind != "input":
            continue
        kind, test = ("file", "-f") if m.is_file else ("directory", "-d")
        missing = _say(
            f"input '{m.name}' of run {plan.source.run.run_id}: {m.source} is not a {kind} "
            f"here; copy the data here, or print the script again with "
            f"--inputs {m.name}=PATH"
        )
        lines.append(f"[ {test} {shlex.quote(m.source)} ] || {{ {missing}; exit 2; }}")
    return lines


def _say(message: str) -> str:
    """A shell command printing `message` on stderr as one line, whatever it holds."""
    return f"printf '%s\\n' {shlex.quote(_printable(message))} >&2"


def _comment(text: str) -> str:
    return f"# {_printable(text)}"


def _printable(text: str) -> str:
    """`text` with each control character written as an escape (a newline would end the
    comment or the message, and the rest would be read as a command)."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )
