"""A test's folder driven through the CLI in-process with tests/fakes.FakeEngine.

The unit-test twin of tests/workspace.py: the same spec/folder/cli/record helpers, but
`cli` invokes the click group with `App(engine_factory=...)`, so no Docker is reached.
pytest puts tests/ on sys.path: `from fake_cli import FakeWorkspace, fake_workspace`.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakeEngine
from helpers import BASE_IMAGE

from containerexec.cli import App, cli
from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import RunResult, ShardEvent
from containerexec.store.records import RunRecord, ShardRecord
from containerexec.store.tree import RunStore


@dataclass
class Done:
    """What `containerexec ARGS` did: as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


class FakeWorkspace:
    """Specs, inputs and a run store under one folder; the CLI runs on `engine`."""

    def __init__(self, root: Path, engine: FakeEngine | None = None) -> None:
        self.root = root
        self.runs_dir = root / "runs"
        self.store = RunStore(self.runs_dir)
        self.engine = engine or FakeEngine()

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

    def cli(self, *args: str, env: Mapping[str, str | None] | None = None, **_: object) -> Done:
        """`containerexec ARGS` in this folder, to its end, on the fake engine."""
        app = App(runs_dir=self.runs_dir, engine_factory=lambda: self.engine, sleep=lambda s: None)
        with contextlib.chdir(self.root):
            result = CliRunner().invoke(
                cli,
                ["--runs-dir", str(self.runs_dir), *args],
                obj=app,
                env=dict(env or {}),
            )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Done(result.exit_code, result.stdout, result.stderr)

    def run(
        self,
        spec_path: Path,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, str] | None = None,
        *,
        on_event: Callable[[ShardEvent], None] | None = None,
        on_line: Callable[[int, str, str], None] | None = None,
        **options: Any,
    ) -> tuple[ModuleSpec, Bindings, RunResult]:
        """Run through the library API (Executor.start, then wait) on the fake engine."""
        spec = load_spec(spec_path)
        executor = Executor(self.engine, self.store, on_event=on_event, on_line=on_line)
        opts = RunOptions(
            grace_s=options.pop("grace_s", 1.0),
            default_outputs=self.root / "default-outputs",
            **options,
        )
        run = executor.start(
            spec,
            dict(inputs or {}),
            dict(outputs or {}),
            base=self.root,
            spec_path=spec_path,
            options=opts,
        )
        result = run.wait()
        return spec, Bindings(result.record.inputs, result.record.outputs), result

    def run_id(self) -> str:
        """The id of the one run recorded here."""
        ids = self.store.ids()
        assert len(ids) == 1, ids
        return ids[0]

    def record(self, run: str = "last") -> RunRecord:
        return self.store.load_run(run)

    def shards(self, run: str = "last") -> dict[int, ShardRecord]:
        return self.store.load_shards(self.store.resolve_id(run))


@pytest.fixture(name="workspace")
def fake_workspace(tmp_path: Path) -> Iterator[FakeWorkspace]:
    """A FakeWorkspace in tmp_path, on a fresh FakeEngine."""
    yield FakeWorkspace(tmp_path)
