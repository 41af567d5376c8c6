"""A test's folder: spec files, input data, a run store, and `containerexec` run as a user would.

Import `workspace_fixture` into a test module to get the `workspace` fixture.

Engine tests run the real command line in a subprocess (for exit status, signals and
output) or the library API with the session label (for callbacks during a run).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from folder import SpecFolder
from helpers import CONTAINEREXEC, local_engine, remove_run_containers, wait_for

from containerexec.engine.docker import DockerEngine
from containerexec.model.bindings import Bindings
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import RunResult, ShardEvent


class Workspace(SpecFolder):
    """Specs, inputs and a run store under one tmp_path; the CLI as a user would run it."""

    def __init__(self, root: Path, labels: Mapping[str, str]) -> None:
        super().__init__(root)
        self.labels = dict(labels)
        self.procs: list[subprocess.Popen[str]] = []

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "CONTAINEREXEC_RUNS_DIR": str(self.runs_dir), **(extra or {})}

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """`containerexec ARGS` to its end, with output captured."""
        return subprocess.run(
            [CONTAINEREXEC, *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(
        self, *args: str, env: Mapping[str, str] | None = None, stdout: Any = subprocess.DEVNULL
    ) -> subprocess.Popen[str]:
        """`containerexec ARGS` in the background, in its own session (so signals reach only it)."""
        proc = subprocess.Popen(
            [CONTAINEREXEC, *args],
            cwd=self.root,
            env=self.env(env),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill (by PID) any containerexec this test started and left running."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def run_id(self, timeout_s: float = 60.0) -> str:
        """The id of the one run recorded here (waits until it is)."""
        ids = wait_for(self.store.ids, timeout_s=timeout_s, what="a run record")
        assert len(ids) == 1, ids
        return ids[0]

    def run(
        self,
        spec_path: Path,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, str] | None = None,
        *,
        on_event: Callable[[ShardEvent], None] | None = None,
        on_line: Callable[[int, str, str], None] | None = None,
        engine: DockerEngine | None = None,
        secrets: Mapping[str, str] | None = None,
        **options: Any,
    ) -> tuple[ModuleSpec, Bindings, RunResult]:
        """Run through the library API, with the session label on every container."""
        spec = load_spec(spec_path)
        own = engine is None
        engine = engine or local_engine()
        executor = Executor(engine, self.store, secrets=secrets, on_event=on_event, on_line=on_line)
        opts = RunOptions(
            labels=self.labels,
            grace_s=options.pop("grace_s", 1.0),
            default_outputs=self.root / "default-outputs",
            **options,
        )
        try:
            run = executor.start(
                spec,
                dict(inputs or {}),
                dict(outputs or {}),
                base=self.root,
                spec_path=spec_path,
                options=opts,
            )
            result = run.wait()
        finally:
            if own:  # an unclosed client warns when collected, in whichever test runs then
                engine.api.close()
        return spec, Bindings(result.record.inputs, result.record.outputs), result


@pytest.fixture(name="workspace")
def workspace_fixture(
    tmp_path: Path, test_session_label: dict[str, str], docker_client: Any
) -> Iterator[Workspace]:
    """A Workspace in tmp_path; afterwards, no container of its runs is left on the engine."""
    ws = Workspace(tmp_path, test_session_label)
    yield ws
    ws.close()
    for run_id in ws.store.ids():
        remove_run_containers(docker_client, run_id)
