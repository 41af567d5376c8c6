"""A container's cgroup on this host: where it is, and its figures (memory, CPU, block I/O).

Engine-agnostic: an engine names the folders its containers' cgroups may be in
(`Cgroup.find`) or the PID of a container's first process (`Cgroup.of_pid`, through
/proc/PID/cgroup), and the files are the kernel's. Both layouts are read:

- cgroup v1: memory/.../memory.max_usage_in_bytes (the peak), memory.usage_in_bytes,
  cpuacct/.../cpuacct.usage (ns), blkio/.../blkio.throttle.io_service_bytes;
- cgroup v2: one folder with memory.peak (kernel 5.19+), memory.current, cpu.stat
  (usage_usec) and io.stat (rbytes=, wbytes= per device).

A figure the files cannot give is None, never a guess: v1 counts block I/O only once
a throttle rule exists on the disk, and until then its files (the container's and its
parent's) have no device line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from containerexec.engine.base import Stats

ROOT = Path("/sys/fs/cgroup")
V1_FOLDERS = {"memory": "memory", "cpu": "cpuacct", "io": "blkio"}


def number(text: str) -> int | None:
    """A counter file's integer; None for 'max' or anything that is not one."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def v1_io(text: str) -> tuple[int | None, int | None]:
    """(read, write) bytes summed over the devices of blkio.throttle.io_service_bytes;
    (None, None) when no device is listed: v1 is not counting (no throttle rule yet)."""
    read = write = 0
    counted = False
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():  # "MAJ:MIN Op bytes"; "Total N" has 2
            counted = True
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return (read, write) if counted else (None, None)


def v2_io(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over io.stat's devices; v2 always counts, so none is 0."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if value.isdigit():
                if key == "rbytes":
                    read += int(value)
                elif key == "wbytes":
                    write += int(value)
    return read, write


def v2_cpu_seconds(text: str) -> float | None:
    """cpu.stat's usage_usec, in seconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup as {controller: path}; the v2 line ('0::/path') is under ''."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        for controller in controllers.split(","):
            paths[controller.removeprefix("name=")] = path
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


# Where the cgroups of Docker's (cgroupfs, systemd drivers) and Podman's containers are,
# under /sys/fs/cgroup or each v1 controller; any other place is found from the PID.
CONTAINER_PLACES = (
    "docker/{id}",
    "system.slice/docker-{id}.scope",
    "machine.slice/libpod-{id}.scope",
    "libpod_parent/libpod-{id}",
)


@dataclass(frozen=True)
class Cgroup:
    """One container's cgroup: on v2 one folder, on v1 one per controller ('memory',
    'cpu', 'io'; a controller not mounted is missing)."""

    v2: Path | None = None
    v1: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def find(cls, relative: list[str], root: Path = ROOT) -> Cgroup | None:
        """The first of the `relative` folders that exists under `root`, in its layout."""
        if (root / "cgroup.controllers").exists():
            for rel in relative:
                if (root / rel / "cgroup.procs").exists():
                    return cls(v2=root / rel)
            return None
        for rel in relative:
            found = tuple(
                (kind, root / sub / rel)
                for kind, sub in V1_FOLDERS.items()
                if (root / sub / rel).is_dir()
            )
            if found:
                return cls(v1=found)
        return None

    @classmethod
    def of_container(cls, container_id: str, root: Path = ROOT) -> Cgroup | None:
        """The container's cgroup at one of the engines' known places, if it is there."""
        return cls.find([p.format(id=container_id) for p in CONTAINER_PLACES], root)

    @classmethod
    def of_pid(cls, pid: int, root: Path = ROOT, proc: Path = Path("/proc")) -> Cgroup | None:
        """The cgroup of process `pid` (the container's first process), as this host sees it."""
        text = _read(proc / str(pid) / "cgroup")
        if not text:
            return None
        paths = proc_cgroup(text)
        if (root / "cgroup.controllers").exists():
            rel = paths.get("", "").lstrip("/")
            return cls(v2=root / rel) if rel and (root / rel).is_dir() else None
        found = tuple(
            (kind, root / sub / paths[sub].lstrip("/"))
            for kind, sub in V1_FOLDERS.items()
            if paths.get(sub, "").strip("/") and (root / sub / paths[sub].lstrip("/")).is_dir()
        )
        return cls(v1=found) if found else None

    def read(self) -> Stats | None:
        """The figures now; None when the cgroup is gone (the container ended)."""
        return self._read_v2(self.v2) if self.v2 is not None else self._read_v1()

    def _read_v2(self, d: Path) -> Stats | None:
        cpu = _read(d / "cpu.stat")
        if cpu is None:
            return None
        io = _read(d / "io.stat")
        read, write = v2_io(io) if io is not None else (None, None)
        peak = _read(d / "memory.peak")  # kernel 5.19+; the sampling covers older ones
        current = _read(d / "memory.current")
        return Stats(
            memory_peak_bytes=number(peak) if peak is not None else None,
            memory_bytes=number(current) if current is not None else None,
            cpu_seconds=v2_cpu_seconds(cpu),
            read_bytes=read,
            write_bytes=write,
        )

    def _read_v1(self) -> Stats | None:
        d = dict(self.v1)
        files = {
            "peak": _read(d["memory"] / "memory.max_usage_in_bytes") if "memory" in d else None,
            "cpu": _read(d["cpu"] / "cpuacct.usage") if "cpu" in d else None,
            "io": _read(d["io"] / "blkio.throttle.io_service_bytes") if "io" in d else None,
        }
        if all(text is None for text in files.values()):
            return None
        ns = number(files["cpu"]) if files["cpu"] is not None else None
        read, write = v1_io(files["io"]) if files["io"] is not None else (None, None)
        if read is None and "io" in d:
            # No device line: v1 is not counting, or this container did no block I/O
            # while the parent's lines say it is counting.
            parent = _read(d["io"].parent / "blkio.throttle.io_service_bytes")
            if parent is not None and v1_io(parent) != (None, None):
                read = write = 0
        return Stats(
            memory_peak_bytes=number(files["peak"]) if files["peak"] is not None else None,
            cpu_seconds=ns / 1e9 if ns is not None else None,
            read_bytes=read,
            write_bytes=write,
        )
