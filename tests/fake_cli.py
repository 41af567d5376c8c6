"""A test's folder driven through the CLI in-process with tests/fakes.FakeEngine.

The unit-test twin of tests/workspace.py: the same spec/folder/cli/record helpers, but
`cli` invokes the click group with `App(engine_factory=...)`, so no Docker is reached.
pytest puts tests/ on sys.path: `from fake_cli import FakeWorkspace, fake_workspace`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import FakeEngine
from folder import SpecFolder

from containerexec.cli import App, cli
from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import RunResult, ShardEvent


@dataclass
class Done:
    """What `containerexec ARGS` did: as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


class FakeWorkspace(SpecFolder):
    """Specs, inputs and a run store under one folder; the CLI runs on `engine`."""

    def __init__(self, root: Path, engine: FakeEngine | None = None) -> None:
        super().__init__(root)
        self.engine = engine or FakeEngine()

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


@pytest.fixture(name="workspace")
def fake_workspace(tmp_path: Path) -> Iterator[FakeWorkspace]:
    """A FakeWorkspace in tmp_path, on a fresh FakeEngine."""
    yield FakeWorkspace(tmp_path)
