"""Finding Podman's API socket, and starting a service on it when none answers.

Podman has no daemon: `podman system service` serves its API for as long as it is
asked to. The documented one (rootful, started by `make setup ENGINE=podman`, or a
user's systemd `podman.socket`) runs with no timeout, like dockerd; the one started
here exits after IDLE_S seconds without a request, so it never outlives its use by much.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from containerexec.errors import EngineUnavailable

__all__ = ["HOST_VAR", "IDLE_S", "ensure_service", "service_socket"]

HOST_VAR = "CONTAINEREXEC_PODMAN_HOST"  # unix:///PATH, when the service listens elsewhere
ROOTFUL_SOCKET = Path("/run/podman/podman.sock")
IDLE_S = 300  # a started service ends after this long without a request
START_WAIT_S = 20.0


def service_socket(environ: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    """Where the Podman service of this user listens: CONTAINEREXEC_PODMAN_HOST, else
    /run/podman/podman.sock for root, else $XDG_RUNTIME_DIR/podman/podman.sock."""
    env = os.environ if environ is None else environ
    given = env.get(HOST_VAR, "")
    if given:
        return Path(given.removeprefix("unix://"))
    if (os.geteuid() if uid is None else uid) == 0:
        return ROOTFUL_SOCKET
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid() if uid is None else uid}"
    return Path(runtime) / "podman" / "podman.sock"


def answers(path: Path, timeout_s: float = 5.0) -> bool:
    """Whether a service answers GET /_ping on the unix socket `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            head = sock.recv(64)
        return head.startswith(b"HTTP/1.") and b" 200 " in head
    except OSError:
        return False


def ensure_service(path: Path, *, idle_s: int = IDLE_S) -> None:
    """Return once a Podman service answers on `path`, starting one if none does.

    Raises:
        EngineUnavailable: podman is not installed, or the service did not answer.
    """
    if answers(path):
        return
    exe = shutil.which("podman")
    if exe is None:
        raise EngineUnavailable(
            str(path),
            "podman is not installed",
            engine="Podman",
            advice="install it (Debian: 'apt-get install podman catatonit uidmap "
            "slirp4netns fuse-overlayfs') or choose another engine with --engine",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Detached from our output (a service holding a pipe open hangs whoever reads
        # it) and from our session (Ctrl-C in the terminal is not for it). From /: its
        # conmons inherit its folder, and fail every start once that folder is deleted.
        subprocess.Popen(
            [exe, "system", "service", f"--time={idle_s}", f"unix://{path}"],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise EngineUnavailable(
            str(path),
            f"cannot start 'podman system service' there: {exc.strerror or exc}",
            engine="Podman",
            advice=f"set {HOST_VAR} to where a Podman service listens, or start one",
        ) from None
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if answers(path):
            return
        time.sleep(0.1)
    raise EngineUnavailable(
        str(path),
        f"'podman system service' did not answer within {START_WAIT_S:g} s",
        engine="Podman",
        advice=f"run 'podman system service --time=0 unix://{path}' to see why",
    )
