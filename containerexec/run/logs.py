"""A shard's log: a file of bounded size that keeps the last lines, and a tail in memory."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from pathlib import Path

DEFAULT_LIMIT_BYTES = 16 * 1024 * 1024
TAIL_LINES = 20

LineSink = Callable[[str, str], None]  # (stream name, line)


class LogSink:
    """Writes container output to `path`, never holding more than `limit_bytes` on disk.

    Past the limit the file rotates in two halves, so the saved log keeps the last
    bytes; `finish()` joins them with a marker saying how much was dropped.
    """

    def __init__(
        self,
        path: Path,
        *,
        limit_bytes: int = DEFAULT_LIMIT_BYTES,
        on_line: LineSink | None = None,
        redact: list[str] | None = None,
    ) -> None:
        self.path = path
        # Secret values never reach the saved log or our output (a value split across
        # two chunks of output is the one case this cannot see).
        self.redact = [s.encode() for s in (redact or []) if len(s) >= 3]
        self.half = max(limit_bytes // 2, 4096)
        self.on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.dropped = 0
        self.total = 0
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._old = path.with_name(path.name + ".1")
        self._old.unlink(missing_ok=True)
        self._file = path.open("wb")
        self._written = 0
        self._partial = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, chunk: bytes) -> None:
        for secret in self.redact:
            chunk = chunk.replace(secret, b"***")
        self.total += len(chunk)
        if self._written + len(chunk) > self.half:
            self._rotate()
        self._file.write(chunk[-self.half :])
        self._written += min(len(chunk), self.half)
        data = self._partial[stream] + chunk
        *lines, rest = data.split(b"\n")
        # A line with no newline for a long time is cut, so memory stays bounded.
        self._partial[stream] = rest[-8192:]
        for raw in lines[-TAIL_LINES:] if not self.on_line else lines:
            self._line(stream, raw)

    def _line(self, stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.tail.append(line)
        if stream == "stderr":
            self.stderr_tail.append(line)
        if self.on_line:
            self.on_line(stream, line)

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self._old)
        self._file = self.path.open("wb")
        self._written = 0

    def finish(self) -> None:
        """Flush partial lines and join the halves into one file."""
        for stream, rest in self._partial.items():
            if rest:
                self._line(stream, rest)
        self._partial = {"stdout": b"", "stderr": b""}
        self._file.close()
        if not self._old.exists():
            return
        kept = self._old.stat().st_size + self.path.stat().st_size
        self.dropped = max(0, self.total - kept)
        joined = self.path.with_name(self.path.name + ".joined")
        with joined.open("wb") as out:
            out.write(
                f"[containerexec: {self.dropped} earlier bytes of this log were dropped; "
                "the last ones follow]\n".encode()
            )
            for part in (self._old, self.path):
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
        os.replace(joined, self.path)
        self._old.unlink()
