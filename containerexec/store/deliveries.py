"""What containerexec delivered to each -o place, and the lock of the run writing there.

    <root>/deliveries/<key>.jsonl  the run that delivered there, then one line per commit:
                                   each entry it placed, as lstat saw it just after
    <root>/deliveries/<key>.lock   flock held by the run writing there ("PID RUN_ID")

`<key>` is a hash of the place's real path. A rerun to the same place may replace
what is there only when every entry there is one this ledger lists, unchanged: so
a file someone added or edited since is refused (see run/staging.py).

An entry is stamped with its kind, size, mtime, ctime and inode rather than a
sha256, as git's index stamps the work tree: a stat costs the same for 1 KB and for
10 GB, where hashing would read every delivered byte twice (once to record, once to
check), and any write to a file moves its ctime, which a user cannot set back. A
`touch` or a restore from a backup reads as an edit: the rerun is refused, the safe
side, and --overwrite is the way on.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from containerexec.errors import OutputLocked
from containerexec.store.tree import RunLock

Stamp = list[object]  # ["dir"], or [kind, size, mtime_ns, ctime_ns, inode]


def stamp(path: Path) -> Stamp | None:
    """The stamp of one entry as it is now (links are not followed); None when gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return ["dir"]
    kind = "link" if stat.S_ISLNK(st.st_mode) else "file"
    return [kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


@dataclass(frozen=True)
class Foreign:
    """An entry of a place that the ledger does not account for: its path, and why."""

    path: str
    why: str


class PlaceLock(RunLock):
    """An -o place's flock: one run writes there at a time; the holder names itself."""

    def __init__(self, path: Path, run_id: str, output: str, place: str) -> None:
        super().__init__(path, run_id)
        self.output = output
        self.place = place

    def _content(self) -> str:
        return f"{os.getpid()} {self.run_id}"

    def _refusal(self, words: list[str]) -> Exception:
        holder = words[1] if len(words) > 1 else ""
        if holder == self.run_id:  # a resume of the run that writes there: that run is busy
            return super()._refusal(words)
        pid = int(words[0]) if words and words[0].isdigit() else None
        return OutputLocked(self.output, self.place, holder, pid)


class Deliveries:
    """The ledgers and locks of -o places, in one folder of the store (see above)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, place: Path, suffix: str) -> Path:
        key = hashlib.sha256(os.path.realpath(place).encode()).hexdigest()[:32]
        return self.folder / f"{key}.{suffix}"

    def lock(self, output: str, place: str, run_id: str) -> PlaceLock:
        """The lock of `place` for `run_id` (not taken yet: enter it); entering raises
        OutputLocked naming the run and process that hold it."""
        return PlaceLock(self._path(Path(place), "lock"), run_id, output, place)

    def read(self, place: Path) -> tuple[str, dict[str, Stamp]]:
        """The run that delivered to `place` last, and what it placed there ('' for none)."""
        owner, known = "", dict[str, Stamp]()
        try:
            text = self._path(place, "jsonl").read_text()
        except OSError:
            return owner, known
        for line in text.splitlines():
            try:
                item = json.loads(line)
                owner = owner or str(item["run"])
                known.update(item["entries"])
            except (ValueError, KeyError, TypeError):
                return "", {}  # a damaged ledger vouches for nothing
        return owner, known

    def record(self, place: Path, run_id: str, rels: Iterable[str], *, fresh: bool = False) -> None:
        """Add what `run_id` just placed at `place` (paths relative to it; '' for the place
        itself). A run other than the last owner (or `fresh`) starts the ledger again."""
        entries = {rel: stamp(place / rel if rel else place) for rel in rels}
        path = self._path(place, "jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = "" if fresh else self._owner(path)
        line = json.dumps({"run": run_id, "entries": entries}, sort_keys=True) + "\n"
        with path.open("a" if owner == run_id else "w") as f:
            f.write(line)

    def record_tree(self, place: Path, run_id: str) -> None:
        """`place` is wholly what `run_id` delivered (a pipeline output placed in one rename)."""
        self.record(place, run_id, ["", *(rel for rel, _ in _walk(place))], fresh=True)

    def foreign(self, place: Path) -> Foreign | None:
        """The first entry of `place` that is not as the ledger says a run left it; None
        when everything there is what containerexec delivered."""
        owner, known = self.read(place)
        for rel, now in [("", stamp(place)), *_walk(place)]:
            shown = str(place / rel) if rel else str(place)
            was = known.get(rel)
            if was is None and not (rel == "" and now == ["dir"]):
                return Foreign(shown, "was not written by containerexec")
            if was is not None and was != now:
                return Foreign(shown, f"changed since run {owner} wrote it")
        return None

    @staticmethod
    def _owner(path: Path) -> str:
        try:
            with path.open() as f:
                return str(json.loads(f.readline())["run"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""


def _walk(place: Path) -> list[tuple[str, Stamp | None]]:
    """Every entry under a folder `place` (links not followed), sorted, with its stamp."""
    if not place.is_dir() or place.is_symlink():
        return []
    out = []
    for top, dirs, names in os.walk(place):
        rel_top = os.path.relpath(top, place)
        for name in [*dirs, *names]:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            out.append((rel, stamp(place / rel)))
    return sorted(out)
