"""Staging folders for outputs: the check of a succeeded attempt's outputs and their commit.

A commit merges each output into its place: folders merge recursively, every
entry lands with one rename (a copy then a rename across filesystems), and a
path is written by one shard only. Which shard committed which path is kept in a
small per-run index (`commits.jsonl` in the run folder), locked while a shard
commits, so that a later shard writing the same path fails instead of replacing
it, and a resumed shard may write its own paths again.

What a commit places at an -o place is also written to the store's delivery ledger
(store/deliveries.py), so that running the same command again may replace it: a new
run refuses a non-empty place only for what containerexec did not deliver there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import OUTPUTS_ROOT, Invocation, output_filename
from containerexec.model.spec import ModuleSpec
from containerexec.run import returned
from containerexec.run.cache import ShardCache
from containerexec.run.runner import Attempt, Failure
from containerexec.store import files
from containerexec.store.deliveries import Deliveries
from containerexec.store.tree import RunLock, RunStore

INDEX_NAME = "commits.jsonl"

# What the check found: each output's entries, relative to the output.
Staged = Mapping[str, list[files.Entry]]


class OutputsMissing(Exception):
    """The command exited 0 but did not write a declared file output."""


class UnsafeOutput(Exception):
    """An output holds a link out of it or a special file: nothing of the shard is committed."""

    def __init__(self, output: str, entry: files.UnsafeEntry) -> None:
        self.output = output
        self.path = f"{OUTPUTS_ROOT}/{output}/{entry.path}"
        self.target = entry.target
        target = f" -> '{entry.target}'" if entry.target else ""
        super().__init__(
            f"output '{output}': '{self.path}'{target} {entry.reason}; nothing was "
            "committed. Outputs may hold links only to paths inside the same output "
            "(relative links), and no FIFO, socket or device node"
        )


class OutputCollision(Exception):
    """A path this shard wrote is already committed by another shard (or by no shard)."""

    def __init__(self, path: str, other: int | None) -> None:
        self.path = path
        self.other = other
        by = f"shard {other} of this run" if other is not None else "something other than this run"
        super().__init__(
            f"output path '{path}' was already written by {by}; nothing of this shard "
            "was committed. Each shard must write its own paths (name files after "
            "${{shard.index}} or the shard's value), then run again with --resume"
        )


def prepare(staging: Path, spec: ModuleSpec) -> None:
    """A fresh, empty staging folder per output: an attempt never sees an earlier one's files."""
    if staging.exists():
        shutil.rmtree(staging)
    for name in spec.outputs:
        (staging / name).mkdir(parents=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def check(staging: Path, spec: ModuleSpec, bindings: Bindings) -> Staged:
    """Check and normalise the staged outputs (files.normalise); returns what commit places.

    Raises OutputsMissing when a file output was not written, UnsafeOutput for a
    link out of an output or a special file.
    """
    found: dict[str, list[files.Entry]] = {}
    for name, port in spec.outputs.items():
        root = staging / name
        if port.type == "file":
            root = root / output_filename(spec, bindings, name)
            if not os.path.lexists(root):
                raise OutputsMissing(f"output '{name}': the command did not write {root.name}")
        try:
            found[name] = files.normalise(root)
        except files.UnsafeEntry as exc:
            raise UnsafeOutput(name, exc) from None
    return found


@dataclass
class CommitIndex:
    """Which shard committed which path, and the old outputs to clear at the first commit."""

    path: Path
    claims: dict[str, int] = field(default_factory=dict)
    to_clear: list[str] = field(default_factory=list)

    @contextmanager
    def locked(self) -> Iterator[CommitIndex]:
        """Read the index under an exclusive lock (shards may commit from other processes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                self.claims, self.to_clear = {}, []
                for line in f:
                    self._read(json.loads(line))
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self, item: dict[str, object]) -> None:
        if "overwrite" in item:
            self.to_clear = [str(p) for p in item["overwrite"]]  # type: ignore[attr-defined]
        elif "cleared" in item:
            self.to_clear = []
        else:
            shard = int(item["shard"])  # type: ignore[call-overload]
            self.claims.update((str(p), shard) for p in item["paths"])  # type: ignore[attr-defined]

    def append(self, item: dict[str, object]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(item, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._read(item)


def overwrite_later(index_path: Path, targets: list[str]) -> None:
    """Record that these old outputs are removed when the run commits its first output."""
    CommitIndex(index_path).append({"overwrite": sorted(targets)})


def commit(
    staging: Path,
    spec: ModuleSpec,
    bindings: Bindings,
    staged: Staged,
    *,
    shard: int,
    index: CommitIndex,
    deliver: Callable[[str, list[str]], None] | None = None,
) -> list[str]:
    """Move a checked attempt's outputs into place; returns the paths written.

    Everything is checked before anything moves: a path another shard committed (or
    that no shard of this run wrote) raises OutputCollision and nothing is placed.
    `deliver(output, entries)` is told what was placed (relative to the output's place).
    """
    with index.locked():
        if index.to_clear:
            for old in index.to_clear:  # --overwrite: the old content goes now, not before
                files.remove(Path(old))
            index.append({"cleared": True})
        moves: list[tuple[Path, Path]] = []
        claimed: list[str] = []
        for name, port in spec.outputs.items():
            target = Path(bindings.outputs[name])
            if port.type == "file":
                _check_path(target, shard, index.claims)
                moves.append((staging / name / output_filename(spec, bindings, name), target))
                claimed.append(str(target))
                continue
            fresh = not os.path.lexists(target)
            if fresh:  # the common case: the whole folder lands in one rename
                moves.append((staging / name, target))
            else:
                _check_path(target, shard, index.claims, folder=True)
            for e in staged[name]:
                dest = target / e.rel
                if e.kind != "dir":
                    claimed.append(str(dest))
                if fresh or (e.kind == "dir" and dest.is_dir() and not dest.is_symlink()):
                    continue  # folders merge
                _check_path(dest, shard, index.claims)
                moves.append((staging / name / e.rel, dest))
        if claimed:  # before moving: a crash in between leaves claims, never unclaimed files
            index.append({"shard": shard, "paths": claimed})
        for src, dest in _outermost(moves):
            _place(src, dest)
        if deliver is not None:
            for name in spec.outputs:
                deliver(name, ["", *(e.rel for e in staged[name])])
    discard(staging)
    return claimed


def _check_path(dest: Path, shard: int, claims: Mapping[str, int], *, folder: bool = False) -> None:
    """Refuse `dest` when it is there and not this shard's own (or, for an output's
    folder, when it is there but is not a folder)."""
    if not os.path.lexists(dest):
        return
    is_dir = dest.is_dir() and not dest.is_symlink()
    if folder and is_dir:
        return
    other = claims.get(str(dest))
    if other == shard and not is_dir:
        return  # a resumed shard writes its own paths again
    if other is None and is_dir:
        prefix = f"{dest}{os.sep}"
        other = next((s for p, s in claims.items() if p.startswith(prefix)), None)
    raise OutputCollision(str(dest), other)


def _outermost(moves: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Only the outermost new entries move: a new folder moves with everything in it."""
    moving = {dest for _, dest in moves}
    return [(src, dest) for src, dest in moves if not any(p in moving for p in dest.parents)]


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dest) and src.is_dir() != (dest.is_dir() and not dest.is_symlink()):
        files.remove(dest)  # this shard's own entry of another kind: no rename replaces it
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        files.copy_then_rename(src, dest)  # another filesystem: no rename reaches it


def places(store: RunStore, outputs: Mapping[str, str]) -> dict[str, str]:
    """The outputs placed outside the store (by -o): those a delivery ledger keeps."""
    return {n: p for n, p in outputs.items() if not Path(p).is_relative_to(store.root)}


@dataclass
class Claim:
    """The -o places a new run holds (their locks), and those whose old content it replaces."""

    locks: list[RunLock]
    used: list[str]

    def hand_to(self, lock: RunLock, index_path: Path) -> None:
        """The run's lock carries the places' locks from now on, and the old content of
        the places goes when the run commits its first output (overwrite_later)."""
        lock.riders += self.locks
        if self.used:
            overwrite_later(index_path, self.used)

    def close(self) -> None:
        """Let go of the places (a run that holds them itself: a pipeline's)."""
        for lock in self.locks:
            lock.__exit__()


@contextmanager
def claimed(
    store: RunStore,
    run_id: str,
    outputs: Mapping[str, str],
    where: str,
    *,
    overwrite: bool,
    check: Mapping[str, str] | None = None,
) -> Iterator[Claim]:
    """Lock each -o place of `outputs` for `run_id`, then refuse_non_empty those of `check`
    (default: all). OutputLocked at once when another run writes to one. The locks are let
    go when the block raises; else the caller hands them to the run's lock (RunLock.riders)."""
    deliveries = Deliveries(store.deliveries)
    locks: list[RunLock] = []
    try:
        for name, place in sorted(places(store, outputs).items()):
            locks.append(deliveries.lock(name, place, run_id).__enter__())
        checked = outputs if check is None else check
        yield Claim(locks, refuse_non_empty(where, checked, overwrite=overwrite, store=store))
    except BaseException:
        Claim(locks, []).close()
        raise


def refuse_non_empty(
    where: str, outputs: Mapping[str, str], *, overwrite: bool, store: RunStore
) -> list[str]:
    """The output places that already hold something, all to be replaced; UsageError for
    the first that holds what containerexec did not deliver there, unless `overwrite`.

    A new run never mixes its files with what is there: the old content stays until
    the run commits its first output. What a run delivered and nobody changed since
    (store/deliveries.py) goes then; anything else only with --overwrite.
    """
    used = {n: p for n, p in sorted(outputs.items()) if files.has_content(Path(p))}
    deliveries = Deliveries(store.deliveries)
    for name, path in used.items() if not overwrite else ():
        found = deliveries.foreign(Path(path))
        if found is not None:
            what = "a folder that is not empty" if Path(path).is_dir() else "a file that exists"
            what += " and" if found.path == path else f": '{found.path}'"
            raise UsageError(
                f"{where}: output '{name}' would be written to '{path}', {what} "
                f"{found.why}; a new run replaces only what containerexec delivered there. "
                f"Choose another place (-o {name}=NEW_PATH), or pass --overwrite to replace "
                "the old content (it is removed when the run commits its first output)"
            )
    return list(used.values())


class Outputs:
    """A run's outputs, one shard's staging folder at a time: an empty folder for an
    attempt, the check, cache and commit of a succeeded attempt (or of the cache's copy),
    and the value each committed shard returned, until its record takes it."""

    def __init__(
        self,
        spec: ModuleSpec,
        bindings: Bindings,
        *,
        cache: ShardCache | None,
        commit_lock: threading.Lock,
        store: RunStore,
        run_id: str,
    ) -> None:
        self.spec = spec
        self.bindings = bindings
        self.cache = cache if spec.cache else None
        self.commit_lock = commit_lock  # shared by every run that may write the same places
        # Which shard committed which path (CommitIndex).
        self.index_path = store.run_dir(run_id) / INDEX_NAME
        self.run_id = run_id
        self.places = places(store, bindings.outputs)  # the -o ones, kept in the ledger
        self.deliveries = Deliveries(store.deliveries)
        self._values: dict[int, Any] = {}  # shard index -> value taken from its staging

    def prepare(self, staging_dir: Path, inv: Invocation) -> None:
        """An empty staging folder for one attempt, with room for its returned value."""
        prepare(staging_dir, self.spec)
        returned.prepare(staging_dir, inv)

    def taken(self, index: int) -> Any:
        """The value shard `index` returned (None when none), handed over once."""
        return self._values.pop(index, None)

    def restore(self, inv: Invocation, staging_dir: Path, now: float) -> Attempt | None:
        """Commit the cached outputs of this shard: None on a miss (or no cache), else how
        the commit went."""
        if self.cache is None:
            return None
        prepare(staging_dir, self.spec)
        if not self.cache.restore(self.spec, self.bindings, inv, staging_dir):
            return None
        try:
            value = returned.take(staging_dir, inv, self.spec, self.bindings)
        except returned.ValueUnreadable:
            return None  # an entry no container wrote that way: run the shard afresh
        hit = Attempt(number=1, started_at=now, ended_at=now, exit_code=0, counted=False)
        done = self.commit(hit, inv, staging_dir, cached=True)
        if done.ok:
            self._values[inv.shard_index] = value
        return done

    def commit(
        self, a: Attempt, inv: Invocation, staging_dir: Path, *, cached: bool = False
    ) -> Attempt:
        """Check, cache and commit a succeeded attempt's outputs (or `cached` ones restored
        from the cache, whose value `restore` took); or say why not."""
        try:
            staged = check(staging_dir, self.spec, self.bindings)
            if not cached and self.cache is not None:
                self.cache.save(self.spec, self.bindings, inv, staging_dir)
            # Taken out after the cache kept it (a hit returns it too), before the commit.
            value = None if cached else returned.take(staging_dir, inv, self.spec, self.bindings)
            with self.commit_lock:
                commit(
                    staging_dir,
                    self.spec,
                    self.bindings,
                    staged,
                    shard=inv.shard_index,
                    index=CommitIndex(self.index_path),
                    deliver=self._delivered,
                )
            if not cached:
                self._values[inv.shard_index] = value
        except (OutputsMissing, returned.ValueUnreadable) as exc:
            return replace(a, failure=Failure.OUTPUTS_MISSING, message=str(exc))
        except UnsafeOutput as exc:
            return replace(a, failure=Failure.UNSAFE_OUTPUT, message=str(exc))
        except OutputCollision as exc:
            return replace(a, failure=Failure.OUTPUT_COLLISION, message=str(exc))
        except OSError as exc:
            kind = Failure.NO_SPACE if exc.errno == errno.ENOSPC else Failure.ENGINE_ERROR
            where = ", ".join(self.bindings.outputs.values())
            return replace(
                a, failure=kind, message=f"committing outputs to {where}: {exc.strerror or exc}"
            )
        return a

    def _delivered(self, name: str, rels: list[str]) -> None:
        if name in self.places:
            self.deliveries.record(Path(self.places[name]), self.run_id, rels)
