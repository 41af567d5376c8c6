"""A throwaway reference registry (Debian's docker-registry) on 127.0.0.1 for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

REGISTRY_BINARY = "/usr/bin/docker-registry"

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog: {{disabled: true}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: {address}
  secret: containerexec-tests
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def end_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Wait for a process we started to exit; terminate, then kill it (by its PID) if not."""
    for stop in (None, proc.terminate, proc.kill):
        if stop is not None:
            stop()
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


class Service:
    """A test daemon as a context manager: `with Registry() as r:` starts and stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()


class Registry(Service):
    """Start the registry on a free port, with no auth and storage in a temp folder.

    Docker treats 127.0.0.0/8 as an insecure registry by default, so the engine pushes
    and pulls `127.0.0.1:PORT/repo` over plain HTTP without any daemon configuration.
    """

    def __init__(self, binary: str = REGISTRY_BINARY, start_timeout_s: float = 20.0) -> None:
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.tmp: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port, the prefix of image references in this registry."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None, "the registry is not started"
        return self.tmp / "registry.log"

    def log_tail(self, lines: int = 20) -> str:
        if self.tmp is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> Registry:
        self.tmp = Path(tempfile.mkdtemp(prefix="cx-registry-"))
        self.port = free_port()
        config = self.tmp / "config.yml"
        config.write_text(CONFIG.format(root=self.tmp / "storage", address=self.address))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self.process.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"docker-registry did not answer {self.url}/v2/ within {self.start_timeout_s:g} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate, then kill, the registry process (by its PID); remove its folder."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                end_process(self.process)
            self.process = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
