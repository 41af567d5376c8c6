"""The shard cache: outputs of succeeded shards kept by a key over everything that shapes them.

The key is a sha256 over the pinned image, the argv and the whole non-secret env
as the container sees them, the content of every input as mounted (relative path
and sha256 of each file, never times), the output layout, and the module's name
and version. So the code a module runs is in its key however it is authored: a
build folder through the image ID it is pinned to, a Python module's source file
through the environment it travels in. It leaves out what changes from run to
run without changing the result: the run id, container name, labels, user and
host staging paths. A glob shard that mounts only its own file (model/invocation.py)
is keyed on that file alone, not on its index, so a new file in the folder reruns only
its own shard.

Entries live in `<root>/<key[:2]>/<key>/` with `manifest.json` and `outputs/`.
An entry is written to a temporary folder and renamed into place, so a reader
never sees half of one; restore checks every file against the manifest first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, output_filename
from containerexec.model.spec import ModuleSpec
from containerexec.store import files
from containerexec.store.manifests import manifest, sha256_file

# 2: the whole env is keyed (1 dropped CONTAINEREXEC_* names, and with them a Python
# module's source); glob shards may be keyed on their own file.
KEY_VERSION = 2
# Where a shard sits in the array; a glob shard that mounts only its own file is keyed
# without them (a `${{shard.index}}` in its argv or env still keys it), so a file added
# before it in sort order does not rerun it.
_POSITION_ENV = ("CONTAINEREXEC_SHARD_INDEX", "CONTAINEREXEC_SHARD_COUNT")
LINK_PREFIX = "link:"  # a manifest value for a link: its target, instead of a sha256


class ShardCache(Protocol):
    """Where succeeded shards' outputs are kept by cache key (see cache.py)."""

    def restore(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> bool:
        """Fill `staging` from a checked entry for this shard's key; False on a miss."""
        ...

    def save(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> None:
        """Keep a copy of a succeeded shard's staged outputs, atomically."""
        ...

    def holds(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation) -> bool:
        """Whether an entry for this shard's key is there (a cheap look, not a check)."""
        ...


class Cache:
    """A folder of cache entries; implements ShardCache. Safe to share between runs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._hashes: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._hash_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.saved = self.dropped = 0

    def key(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation) -> str:
        """The cache key of one shard (hex sha256)."""
        inputs = {
            m.name: [m.target, self._input_hashes(inv.run_id, m.source)]
            for m in inv.mounts
            if m.kind == "input"
        }
        outputs = {
            name: [port.type, output_filename(spec, bindings, name) if port.type == "file" else ""]
            for name, port in spec.outputs.items()
        }
        env = inv.env
        if any(m.shard_file for m in inv.mounts):
            env = {k: v for k, v in env.items() if k not in _POSITION_ENV}
        facts: dict[str, Any] = {
            "key_version": KEY_VERSION,
            "module": [spec.name, spec.version],
            "image": inv.image,
            "argv": inv.argv,
            "env": env,
            "secret_names": inv.secret_names,
            "workdir": inv.workdir,
            "network": inv.network,
            "inputs": inputs,
            "outputs": outputs,
        }
        blob = json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def holds(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation) -> bool:
        """Whether an entry for this shard's key is there (restore still checks it)."""
        return self.entry(self.key(spec, bindings, inv)).is_dir()

    def restore(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> bool:
        """Fill `staging` from a checked entry; a missing or damaged entry is a miss."""
        entry = self.entry(self.key(spec, bindings, inv))
        kept = self._checked(entry)
        if kept is None:
            with self._lock:
                self.misses += 1
            return False
        try:
            for rel in kept:
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                files.copy(entry / "outputs" / rel, dest)
            for name in spec.outputs:  # an empty output folder has no files to recreate it
                (staging / name).mkdir(parents=True, exist_ok=True)
        except OSError:
            return False  # removed under us; the executor starts the shard afresh
        with self._lock:
            self.hits += 1
        return True

    def save(self, spec: ModuleSpec, bindings: Bindings, inv: Invocation, staging: Path) -> None:
        """Copy a succeeded shard's staged outputs into a new entry, in one rename."""
        entry = self.entry(self.key(spec, bindings, inv))
        if entry.is_dir():
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = files.temp_sibling(entry, "tmp")
        try:
            tmp.mkdir()
            files.copy(staging, tmp / "outputs")  # links stay links, and were checked
            hashes = {
                f"{name}/{e.rel}": LINK_PREFIX + e.target
                if e.kind == "link"
                else sha256_file(tmp / "outputs" / name / e.rel)
                for name in sorted(os.listdir(tmp / "outputs"))  # the outputs, and a value
                for e in files.normalise(tmp / "outputs" / name)
                if e.kind != "dir"
            }
            meta = {
                "key_version": KEY_VERSION,
                "module": spec.name,
                "version": spec.version,
                "run_id": inv.run_id,
                "shard": inv.shard_index,
                "files": hashes,
            }
            (tmp / "manifest.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            os.rename(tmp, entry)
        except (OSError, files.UnsafeEntry):
            # Another run saved the same key first, or the disk is full: keep theirs, drop ours.
            shutil.rmtree(tmp, ignore_errors=True)
            return
        with self._lock:
            self.saved += 1

    def _checked(self, entry: Path) -> list[str] | None:
        """The entry's files when every one matches its manifest; else drop the entry."""
        try:
            meta = json.loads((entry / "manifest.json").read_text())
            files: dict[str, str] = meta["files"]
        except (OSError, ValueError, KeyError, TypeError):
            if entry.exists():
                self._drop(entry)
            return None
        for rel, sha in files.items():
            path = entry / "outputs" / rel
            try:
                if sha.startswith(LINK_PREFIX):  # kept as a link, never read through
                    target = sha[len(LINK_PREFIX) :]
                    inside = not os.path.normpath(
                        os.path.join(os.path.dirname(rel), target)
                    ).startswith("..")
                    ok = (
                        inside
                        and not os.path.isabs(target)
                        and path.is_symlink()
                        and os.readlink(path) == target
                    )
                else:
                    ok = path.is_file() and not path.is_symlink() and sha256_file(path) == sha
            except OSError:
                ok = False
            if not ok:
                self._drop(entry)
                return None
        return sorted(files)

    def _drop(self, entry: Path) -> None:
        # Rename first so a concurrent reader sees no entry rather than a half-deleted one.
        trash = files.temp_sibling(entry, "drop")
        try:
            os.rename(entry, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)
        with self._lock:
            self.dropped += 1

    def _input_hashes(self, run_id: str, source: str) -> list[tuple[str, str]]:
        """(relative path, sha256) of each file of an input; hashed once per run."""
        with self._lock:
            lock = self._hash_locks.setdefault((run_id, source), threading.Lock())
        with lock:  # shards starting together wait for one hash instead of each hashing
            found = self._hashes.get((run_id, source))
            if found is None:
                found = [(rel, sha) for rel, _size, sha in manifest(source)]
                self._hashes[(run_id, source)] = found
            return found
