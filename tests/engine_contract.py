"""One contract checked on tests/fakes.FakeEngine and on DockerEngine, so the fake cannot drift.

The fake scripts its containers with an Outcome; the real one runs the equivalent argv.
Its tests take an `engine` fixture: tests/unit/test_engine_contract.py imports them with the
fake (`fake_engine`), tests/engine/test_engine_contract.py with the local Docker engine.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fakes import FakeEngine, Outcome

from containerexec.engine.base import Engine, EngineLost, StartFailed, WaitTimeout
from containerexec.labels import LABEL_RUN
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import parse_spec

BASE_IMAGE = "containerexec/base:bookworm"
SPEC = f"name: contract\nenvironment: {{image: {BASE_IMAGE}}}\ncommand: [sh]\n"


def invocation(argv: list[str], labels: dict[str, str]) -> Invocation:
    inv = resolve(
        parse_spec(SPEC, "contract.yaml"),
        Bindings({}, {}),
        Shard(0, "", 1),
        run_id=f"contract-{uuid.uuid4().hex[:8]}",
        image=BASE_IMAGE,
        staging=Path("/nonexistent"),
        user="0:0",
        labels=labels,
    )
    return inv.model_copy(update={"argv": argv})


# Each case: the argv a real container runs, and the Outcome the fake plays instead.
CASES = {
    "exit-3": (["sh", "-c", "echo hello; exit 3"], Outcome(exit_code=3, output=b"hello\n")),
    "sleep": (["sleep", "30"], Outcome(seconds=30)),
}


def fake_engine() -> FakeEngine:
    """A FakeEngine that plays each case's Outcome for its argv."""
    by_argv = {tuple(argv): outcome for argv, outcome in CASES.values()}
    return FakeEngine(lambda inv, n: by_argv[tuple(inv.argv)])


def started(engine: Engine, case: str, labels: dict[str, str]) -> tuple[Invocation, str]:
    inv = invocation(CASES[case][0], labels)
    cid = engine.create(inv, secrets={})
    engine.start(cid)
    return inv, cid


def test_wait_reports_the_exit_code_and_attach_before_start_gets_all_output(
    engine: Engine,
    test_session_label: dict[str, str],
) -> None:
    cid = engine.create(invocation(CASES["exit-3"][0], test_session_label), secrets={})
    try:
        stream = engine.attach(cid)
        engine.start(cid)
        out = b"".join(o or b"" for o, _ in stream)
        status = engine.wait(cid, timeout_s=30)
    finally:
        engine.remove(cid)
    assert (status.exit_code, status.oom_killed) == (3, False)
    assert out == b"hello\n"


def test_a_wait_past_its_timeout_raises_and_stop_ends_the_container(
    engine: Engine,
    test_session_label: dict[str, str],
) -> None:
    _, cid = started(engine, "sleep", test_session_label)
    try:
        with pytest.raises(WaitTimeout):
            engine.wait(cid, timeout_s=0.5)
        engine.stop(cid, grace_s=1)
        assert engine.wait(cid, timeout_s=30).exit_code != 0
    finally:
        engine.remove(cid)


def test_containers_are_found_by_run_label_and_their_figures_read_until_removed(
    engine: Engine,
    test_session_label: dict[str, str],
) -> None:
    inv, cid = started(engine, "sleep", test_session_label)
    try:
        found = engine.containers({LABEL_RUN: inv.run_id})
        assert [c.id for c in found] == [cid]
        assert found[0].labels[LABEL_RUN] == inv.run_id
        figures = engine.stats(cid)  # read from its cgroup while it runs
        assert figures is not None and figures.cpu_seconds is not None
        peak = figures.memory_peak_bytes or figures.memory_bytes
        assert peak is not None and peak > 0
    finally:
        engine.remove(cid)
    assert engine.containers({LABEL_RUN: inv.run_id}) == []
    assert engine.stats(cid) is None
    engine.remove(cid)  # removing twice is not an error


def test_a_container_that_is_gone_is_named_by_its_id_and_never_as_an_image(
    engine: Engine,
    test_session_label: dict[str, str],
) -> None:
    inv, cid = started(engine, "exit-3", test_session_label)
    engine.remove(cid)

    engine.stop(cid, grace_s=0)  # stopping or removing what is gone is not an error
    engine.remove(cid)
    assert engine.containers({LABEL_RUN: inv.run_id}) == []
    with pytest.raises(EngineLost) as lost:
        engine.wait(cid, timeout_s=5)
    with pytest.raises(StartFailed) as failed:
        engine.start(cid)

    for exc in (lost.value, failed.value):
        assert exc.container == cid and exc.image is None
        text = str(exc)
        assert cid[:12] in text and "module" not in text and "image" not in text, text
    assert not failed.value.command_not_found
