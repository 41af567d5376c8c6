"""A run as one portable file (record, shard records, log tails), and loading one back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from containerexec.errors import RecordError
from containerexec.store.records import SCHEMA_VERSION, Record, RunRecord, ShardRecord, load_model
from containerexec.store.tree import RunStore

EXPORT_KIND = "containerexec.run-export"
EXPORT_LOG_LINES = 200


class RunExport(Record):
    """One run in one portable file: its record, every shard's record, and log tails."""

    kind: Literal["containerexec.run-export"] = "containerexec.run-export"
    schema_version: int = SCHEMA_VERSION
    run: RunRecord
    shards: list[ShardRecord]
    logs: dict[int, list[str]] = Field(
        default_factory=dict, description="Shard index -> the last lines of its log."
    )


def export_run(store: RunStore, run: str) -> RunExport:
    """A run of `store` (id, prefix or 'last') as one self-contained record, secrets left out."""
    rec = store.load_run(run)
    shards = store.load_shards(rec.run_id)
    logs = {i: _tail(store.log_path(rec.run_id, i), EXPORT_LOG_LINES) for i in shards}
    return RunExport(run=rec, shards=[_without_secrets(s) for s in shards.values()], logs=logs)


def _without_secrets(shard: ShardRecord) -> ShardRecord:
    # Invocations never hold secret values; dropping the names from env guards older records.
    inv = shard.invocation
    env = {k: v for k, v in inv.env.items() if k not in inv.secret_names}
    return shard.model_copy(update={"invocation": inv.model_copy(update={"env": env})})


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def load_source(store: RunStore, target: str) -> RunExport:
    """An exported file, a run.json (or its folder), or a run id/prefix/'last' in `store`."""
    path = Path(target).expanduser()
    if path.is_dir() and (path / "run.json").is_file():
        path = path / "run.json"
    if path.is_file():
        try:
            kind = json.loads(path.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None  # load_model below says what is wrong with the file
        if kind == EXPORT_KIND:
            export = load_model(path, RunExport)
        else:
            rec = load_model(path, RunRecord)
            found = sorted((path.parent / "shards").glob("*.json"))
            export = RunExport(run=rec, shards=[load_model(p, ShardRecord) for p in found])
    elif path.suffix == ".json" or os.sep in target:
        raise RecordError(
            target,
            "no such file; give a file written by 'containerexec runs "
            "export', a run.json, or a run id ('containerexec runs list')",
        )
    else:
        rec = store.load_run(target)
        export = RunExport(run=rec, shards=list(store.load_shards(rec.run_id).values()))
    newest = max([export.run.schema_version, *(s.schema_version for s in export.shards)])
    if newest > SCHEMA_VERSION:
        raise RecordError(
            str(path),
            f"written by a newer containerexec (schema {newest}, this "
            f"one reads {SCHEMA_VERSION}); upgrade containerexec "
            "('pip install -U containerexec')",
            newest,
        )
    return export


__all__ = ["RunExport", "export_run", "load_source"]
