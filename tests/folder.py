"""What a test's folder holds, whichever engine runs it: spec files, input folders, a run store.

tests/workspace.py (the real engine) and tests/fake_cli.py (the fake one) both build on it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from helpers import BASE_IMAGE

from containerexec.store.records import RunRecord, ShardRecord
from containerexec.store.tree import RunStore


class SpecFolder:
    """Specs, inputs and a run store under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs_dir = root / "runs"
        self.store = RunStore(self.runs_dir)

    def spec(self, body: str, name: str = "module.yaml") -> Path:
        """Write a spec; `environment` defaults to the base image."""
        text = textwrap.dedent(body)
        if "environment:" not in text:
            text = f"environment: {{image: {BASE_IMAGE}}}\n" + text
        path = self.root / name
        path.write_text(text)
        return path

    def folder(self, name: str, files: Mapping[str, str] | None = None) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
        return path

    def run_id(self) -> str:
        """The id of the one run recorded here."""
        ids = self.store.ids()
        assert len(ids) == 1, ids
        return ids[0]

    def record(self, run: str = "last") -> RunRecord:
        return self.store.load_run(run)

    def shards(self, run: str = "last") -> dict[int, ShardRecord]:
        return self.store.load_shards(self.store.resolve_id(run))
