"""The on-disk tree that one RunStore owns, and the only code that lays it out.

<root>/runs/<run id>/run.json           the RunRecord (small; rewritten at start and end)
                    shards/NNNNNN.json  one ShardRecord per shard (a shard event
                                        rewrites only its own file)
                    logs/NNNNNN.log     each shard's log (earlier attempts beside it)
                    staging/NNNNNN/     an attempt's outputs until they are committed
                    batches/NNNNNN/     a packed batch while it runs (run/packing/batch.py)
                    outputs/            outputs given no -o
                    lock                flock held by the process running it
       pipelines/<pipeline id>/pipeline.json, jobs/<job>/<output>
       cache/<key[:2]>/<key>/           shard cache entries
       deliveries/<key>.jsonl, .lock    what runs delivered to each -o place (deliveries.py)
       pushes/<module>.json             what `containerexec push` sent where
       bundles/<run id>/inputs/<name>   inputs `repro` unpacked from a bundle
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from containerexec.errors import RecordError, RunLocked
from containerexec.store.records import RunRecord, ShardRecord, lean, load_model, write_json


def new_run_id(name: str, now: float) -> str:
    """`NAME-YYYYMMDD-HHMMSS-xxxxxx`: sorts by start time, unique without coordination."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


class RunStore:
    """The whole tree under `--runs-dir`: runs, pipelines, the cache and pushes (see above)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        # Each run's shared env values (RunRecord.shared_env), so shard records name them.
        self._shared: dict[str, dict[str, str]] = {}
        self.runs = self.root / "runs"
        self.pipelines = self.root / "pipelines"
        self.cache = self.root / "cache"
        self.pushes = self.root / "pushes"
        self.deliveries = self.root / "deliveries"

    def pipeline_dir(self, pipeline_run: str) -> Path:
        return self.pipelines / pipeline_run

    def push_path(self, module: str) -> Path:
        return self.pushes / f"{module}.json"

    def default_outputs(self, run_id: str) -> Path:
        """Where the outputs of a run go when no -o names a place."""
        return self.run_dir(run_id) / "outputs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def shard_path(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "shards" / f"{index:06d}.json"

    def log_path(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "logs" / f"{index:06d}.log"

    def staging(self, run_id: str, index: int) -> Path:
        return self.run_dir(run_id) / "staging" / f"{index:06d}"

    def batch_dir(self, run_id: str, first: int) -> Path:
        """The folder of a packed batch (scripts, status, staging) named after its first shard."""
        return self.run_dir(run_id) / "batches" / f"{first:06d}"

    def write_run(self, record: RunRecord) -> Path:
        """Shared env values only grow: a resume of changed code keeps those its earlier
        shard records name."""
        shared = {**self._shared_env(record.run_id), **record.shared_env}
        if shared != record.shared_env:
            record = record.model_copy(update={"shared_env": shared})
        path = self.run_dir(record.run_id) / "run.json"
        write_json(path, record.model_dump(mode="json"))
        self._shared[record.run_id] = shared
        return path

    def write_shard(self, record: ShardRecord, *, durable: bool = True) -> None:
        """Written lean: env values the run record keeps are named, not copied (records.lean).
        `durable=False` skips the fsync: for states a crash may lose (see write_json)."""
        write_json(
            self.shard_path(record.run_id, record.index),
            lean(record, self._shared_env(record.run_id)).model_dump(mode="json"),
            durable=durable,
            compact=True,  # the most numerous records: one line each
        )

    def _shared_env(self, run_id: str) -> dict[str, str]:
        shared = self._shared.get(run_id)
        if shared is None:  # a worker's store: read once from the run record
            try:
                shared = load_model(self.run_dir(run_id) / "run.json", RunRecord).shared_env
            except RecordError:
                shared = {}
            self._shared[run_id] = shared
        return shared

    def resolve_id(self, run: str) -> str:
        """A run id, a unique prefix of one, or 'last' -> the run id.

        'last' is the newest run that is not itself a repro (the newest of all when every
        run is one), so `repro last` can be repeated and `run --resume last` after a
        `repro` resumes the run that failed, not its replay.
        """
        if run == "last":
            ids = self.ids()
            if not ids:
                raise RecordError(str(self.runs), "no runs recorded here yet")
            newest = sorted(
                ids, key=lambda i: (self.run_dir(i) / "run.json").stat().st_mtime, reverse=True
            )
            return next((i for i in newest if self.load_run(i).repro_of is None), newest[0])
        if (self.run_dir(run) / "run.json").is_file():
            return run
        matches = [i for i in self.ids() if i.startswith(run)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            pipelines = sorted({m.rsplit(".", 1)[0] for m in matches if "." in m})
            hint = (
                f"; for the whole pipeline run give '{pipelines[0]}' to a command that "
                "takes one (runs export, repro --job)"
                if len(pipelines) == 1
                else ""
            )
            raise RecordError(
                str(self.runs),
                f"'{run}' matches {len(matches)} runs: {shown}; give more of the id{hint}",
            )
        raise RecordError(
            str(self.runs), f"no run '{run}'; 'containerexec runs list' shows the runs here"
        )

    def resolve_pipeline(self, pipeline_run: str) -> str | None:
        """A pipeline run id or a unique prefix of one -> the id; None when none matches.

        Raises:
            RecordError: the prefix matches several pipeline runs (they are listed).
        """
        if (self.pipeline_dir(pipeline_run) / "pipeline.json").is_file():
            return pipeline_run
        if not self.pipelines.is_dir():
            return None
        matches = sorted(
            p.name
            for p in self.pipelines.iterdir()
            if p.name.startswith(pipeline_run) and (p / "pipeline.json").is_file()
        )
        if len(matches) > 1:
            raise RecordError(
                str(self.pipelines),
                f"'{pipeline_run}' matches {len(matches)} pipeline runs: "
                f"{', '.join(matches[:10])}; give more of the id",
            )
        return matches[0] if matches else None

    def bundle_dir(self, name: str) -> Path:
        """Where `repro` unpacks what a bundle carries (its inputs)."""
        return self.root / "bundles" / name

    def ids(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if (p / "run.json").is_file())

    def load_run(self, run: str) -> RunRecord:
        run_id = self.resolve_id(run)
        return load_model(self.run_dir(run_id) / "run.json", RunRecord)

    def load_shards(self, run_id: str) -> dict[int, ShardRecord]:
        return {rec.index: rec for rec in self.iter_shards(run_id)}

    def iter_shards(self, run_id: str, *, skip_unreadable: bool = False) -> Iterator[ShardRecord]:
        """The run's shard records in index order, one at a time (memory flat in shards).

        `skip_unreadable` passes over a record a machine crash left empty (only
        'running' records are written without fsync), so a resume reruns that shard.
        """
        folder = self.run_dir(run_id) / "shards"
        if not folder.is_dir():
            return
        for name in sorted(n for n in os.listdir(folder) if n.endswith(".json")):
            try:
                yield load_model(folder / name, ShardRecord)
            except RecordError:
                if not skip_unreadable:
                    raise

    def lock(self, run_id: str) -> RunLock:
        return RunLock(self.run_dir(run_id) / "lock", run_id)


class RunLock:
    """An flock on the run folder: released by the kernel when the holder dies, even by SIGKILL."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None
        self.riders: list[RunLock] = []  # locks taken for the run, let go with it

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 256).decode(errors="replace").split()
            os.close(fd)
            raise self._refusal(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, self._content().encode())
        self._fd = fd
        return self

    def _content(self) -> str:
        """What the lock file says of its holder (read by the one refused)."""
        return str(os.getpid())

    def _refusal(self, words: list[str]) -> Exception:
        """The error for a lock held by the process the lock file's `words` name."""
        pid = int(words[0]) if words and words[0].isdigit() else None
        return RunLocked(self.run_id, pid)

    def held(self) -> bool:
        """Whether a live process holds the lock now (a SIGKILLed holder does not)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for rider in self.riders:
            rider.__exit__()
        self.riders = []
