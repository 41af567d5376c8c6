"""A packed batch's state/status: the one file its driver appends a line to as each value
starts and ends, read by the host as it grows (run/packing/batch.py).

    S NNNNNN UPTIME [FILES]                  value NNNNNN started, output to FILES.out/.err
    E NNNNNN STATUS OOM_KILLS UPTIME [KEPT]  it ended: its exit status, the OOM kills during it

FILES names the value's stdout and stderr files in state/ (NNNNNN when absent). The sh
driver reuses one pair while values print nothing: creating a file costs about 0.5 ms on
this ext4, more than running `true`. KEPT is `-` when the value printed nothing (its files
are reused by the next value: not to be read) and FILES when it did (the driver then moves
on to a new pair, and the host reads and removes these).

UPTIME is the first field of /proc/uptime (seconds since boot, 10 ms steps), which the
driver reads without starting a process and which the host shares with the container: a
time on it is turned into wall time by the offset between the two, read once. One file
appended to, instead of a .start and a .rc file per value, saves two file creations per
value on both sides (most of a tiny value's cost was creating and removing files).
A line the host sees without its newline yet is read again whole later; one the driver
never finished (the container died) is never taken.
"""

from __future__ import annotations

import time
from pathlib import Path

UPTIME = Path("/proc/uptime")


def uptime_offset() -> float:
    """Wall time (time.time()) at uptime 0, on this machine."""
    return time.time() - float(UPTIME.read_text().split()[0])


class StatusFile:
    """What the driver has said so far: values started, and values ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_to = 0
        self.partial = b""
        self.offset = uptime_offset()
        self.started: dict[str, float] = {}  # name -> wall time
        self.ended: dict[str, tuple[int, int, float]] = {}  # name -> status, OOM kills, time
        self.files: dict[str, str | None] = {}  # name -> its output files; None: printed nothing

    def poll(self) -> None:
        """Take in the complete lines appended since the last poll."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.read_to)
                data = f.read()
        except FileNotFoundError:
            return
        self.read_to += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self._take(line.decode("ascii", errors="replace").split())

    def _take(self, fields: list[str]) -> None:
        try:
            if fields[0] == "S" and len(fields) in (3, 4):
                self.started[fields[1]] = self.offset + float(fields[2])
                self.files[fields[1]] = fields[3] if len(fields) == 4 else fields[1]
            elif fields[0] == "E" and len(fields) in (5, 6):
                code, ooms, at = int(fields[2]), int(fields[3]), float(fields[4])
                if len(fields) == 6 and fields[5] == "-":
                    self.files[fields[1]] = None
                self.ended[fields[1]] = (code, ooms, self.offset + at)
        except (IndexError, ValueError):
            pass  # not a line of ours: the driver writes nothing else here
