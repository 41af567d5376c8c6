"""In-container driver of a batch of packed Python values: one interpreter for them all.

Never imported by containerexec: run/packing/pyvalues.py writes this text into the
batch's ctl/ folder and the container runs it with the image's python3 (standard
library only). It keeps the sh driver's contract (run/packing/scripts.py): for each
value in order, its start and then its end (exit status, OOM kills) appended to
state/status (run/packing/status.py), its output in NAME.out and .err, /outputs/NAME
linked to the value's own staging folder, nothing the value left running alive and /tmp
empty before the next starts.

The values run in a worker interpreter started with the first value's own argv and
environment plus CONTAINEREXEC_PY_SERVE, on which authoring/entry.py imports the
module once and then calls the function once per request (entry.serve). When the
worker dies during a value (os._exit, a signal, the OOM killer) or overruns the
timeout, that value gets the exit status a lone `python3` would have had (128 + the
signal, 124 or 137 for a timeout) and the next value starts a new worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = "/.containerexec-batch"
STATE = f"{ROOT}/state"
STAGE = f"{ROOT}/stage"
OUTPUTS = "/outputs"
SERVE = "CONTAINEREXEC_PY_SERVE"  # authoring/entry.py SERVE
STRAY_GRACE_S = 1.0  # as the sh driver: TERM, then KILL this long after
OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


class Worker:
    """The interpreter the values run in, and the two pipes to it."""

    def __init__(self, argv: list[str], env: dict[str, str], out: str, err: str) -> None:
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        with open(out, "ab") as o, open(err, "ab") as e:
            self.proc = subprocess.Popen(
                argv,
                env={**env, SERVE: f"{req_r},{rep_w}"},
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                pass_fds=(req_r, rep_w),
                start_new_session=True,  # its own group: a stop reaches all it started
            )
        os.close(req_r)
        os.close(rep_w)
        self.buffer = b""

    def send(self, job: dict[str, Any]) -> bool:
        try:
            os.write(self.req_w, (json.dumps(job) + "\n").encode())
        except OSError:  # it died between values
            return False
        return True

    def reply(self, deadline: float | None) -> tuple[int, bool] | None:
        """(exit status, left a thread) of the value; None when the deadline passed.
        A worker that died answers with its own exit status."""
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.rep_r], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.rep_r, 4096)
            if not chunk:
                return status(self.proc.wait()), False
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        code, left = line.split()
        return int(code), left == b"1"

    def signal(self, sig: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, sig)

    def close(self, grace_s: float) -> None:
        """End it: EOF on its requests, then TERM and KILL if it lingers."""
        with contextlib.suppress(OSError):
            os.close(self.req_w)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                self.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
                break
        os.close(self.rep_r)


def status(returncode: int) -> int:
    """A Popen returncode as sh reports it: 128 + N for a signal."""
    return 128 - returncode if returncode < 0 else returncode


def uptime() -> str:
    with open("/proc/uptime") as f:
        return f.read().split()[0]


def ooms() -> int:
    for path in OOM_FILES:
        with contextlib.suppress(OSError), open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            return 0
    return 0


def link(name: str, links: list[list[str]]) -> None:
    """Empty the value's output folders and point /outputs/LINK at them."""
    for target, sub in links:
        folder = f"{STAGE}/{name}/{sub}"
        for entry in os.listdir(folder):
            remove(f"{folder}/{entry}")
        tmp = f"{OUTPUTS}/.{target}.link"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(folder, tmp)
        os.replace(tmp, f"{OUTPUTS}/{target}")


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def strays(keep: set[int]) -> list[int]:
    """Every process but init, this driver, `keep`, zombies and what `docker exec` started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in keep:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and fields[1] != "0":
            found.append(int(entry))
    return found


def sweep(keep: set[int]) -> None:
    """TERM what a value left running, then KILL what outlives STRAY_GRACE_S."""
    keep = keep | {1, os.getpid()}
    pids = strays(keep)
    if not pids:
        return
    end = time.monotonic() + STRAY_GRACE_S
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        while pids and time.monotonic() < end:
            time.sleep(0.1)
            pids = strays(keep)
        pids = strays(keep)
        end = time.monotonic() + STRAY_GRACE_S


class Driver:
    """The batch: its values in order, one worker at a time."""

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = batch
        self.worker: Worker | None = None
        self.stopping = False
        self.status = os.open(f"{STATE}/status", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.stop)

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.worker is not None:
            self.worker.signal(signal.SIGTERM)

    def run(self) -> int:
        for name in self.batch["names"]:
            if self.stopping:
                return 143
            self.one(name)
        if self.worker is not None:
            self.worker.close(self.batch["grace_s"])
        return 0

    def one(self, name: str) -> None:
        value = self.batch["values"][name]
        out, err = f"{STATE}/{name}.out", f"{STATE}/{name}.err"
        before = ooms()
        for path in (out, err):
            open(path, "wb").close()
        self.say(f"S {name} {uptime()}")
        try:
            link(name, value["links"])
            code = self.call(value, out, err)
        except OSError as exc:  # as the sh value script's `|| exit 125`
            with open(err, "a") as f:
                print(f"containerexec: preparing the value's outputs: {exc}", file=f)
            code = 125
        worker = self.worker
        sweep({worker.proc.pid} if worker is not None else set())
        self.say(f"E {name} {code} {ooms() - before} {uptime()}")
        for entry in os.listdir("/tmp"):
            remove(f"/tmp/{entry}")

    def say(self, line: str) -> None:
        """One line appended to state/status, in one write."""
        os.write(self.status, (line + "\n").encode())

    def call(self, value: dict[str, Any], out: str, err: str) -> int:
        # Over the container's own environment (PATH, secrets), as the sh driver exports.
        env = {**os.environ, **self.batch["env"], **value["env"]}
        argv = value["argv"]
        job = {"argv": argv[3:], "env": env, "out": out, "err": err}
        if self.worker is None or not self.worker.send(job):
            self.retire()
            self.worker = Worker(argv, env, out, err)
            self.worker.send(job)
        timeout = self.batch["timeout_s"]
        deadline = None if timeout is None else time.monotonic() + timeout
        got = self.worker.reply(deadline)
        if got is None:  # as `timeout -k GRACE T`: 124 after TERM, 137 when KILL was needed
            self.worker.signal(signal.SIGTERM)
            got = self.worker.reply(time.monotonic() + max(self.batch["grace_s"], 1.0))
            code = 124 if got is not None else 137
            self.retire()
            return code
        code, left = got
        if left or self.worker.proc.poll() is not None:
            self.retire()
        return code

    def retire(self) -> None:
        if self.worker is not None:
            self.worker.close(self.batch["grace_s"])
            self.worker = None


def main() -> int:
    with open(f"{ROOT}/ctl/batch.json") as f:
        batch = json.load(f)
    return Driver(batch).run()


if __name__ == "__main__":
    sys.exit(main())
