"""A bundle made under one engine replays under the other (issue 23.4): Docker -> Podman and
Podman -> Docker, its image loaded by ID from the bundle. Runs where the engine under test
is Podman (`make test ENGINE=podman`, `make test-podman`); Docker is always set up."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import BASE_IMAGE, TEST_ENGINE

from containerexec.cli import App, cli
from containerexec.engine.factory import make_engine
from containerexec.model.spec import load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.store.tree import RunStore

pytestmark = pytest.mark.podman

SPEC = """\
name: cx-cross
environment: {{image: "{image}", pull: never}}
command: [sh, -c, "echo 'broken on {made}' >&2; exit 3"]
"""


def cx(runs: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, [*args[:2], "--runs-dir", str(runs), *args[2:]], obj=App(runs_dir=runs)
    )


@pytest.mark.parametrize(("made", "replayed"), [("docker", "podman"), ("podman", "docker")])
def test_a_bundle_made_under_one_engine_replays_under_the_other(
    made: str, replayed: str, test_session_label: dict[str, str], tmp_path: Path
) -> None:
    if TEST_ENGINE != "podman":
        pytest.skip("runs with the Podman engine tests (make test ENGINE=podman)")
    source, target = make_engine(made), make_engine(replayed)
    ctx = tmp_path / "image"
    ctx.mkdir()
    # A label of its own: an image the other engine has never seen.
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL cx.cross={uuid.uuid4().hex}\n")
    tag = f"cx-cross:{uuid.uuid4().hex[:10]}"
    image = source.build(
        str(ctx), dockerfile="Dockerfile", tag=tag, buildargs={}, target=None,
        labels=test_session_label,
    )  # fmt: skip
    try:
        spec_path = tmp_path / "cross.yaml"
        spec_path.write_text(SPEC.format(image=tag, made=made))
        store = RunStore(tmp_path / "made")
        result = (
            Executor(source, store)
            .start(load_spec(spec_path), {}, {}, options=RunOptions(labels=test_session_label))
            .wait()
        )
        assert result.record.engine is not None and result.record.engine.name == made
        bundle = tmp_path / "failed.tar"
        exported = cx(store.root, "--engine", made, "runs", "export", "last", "--bundle",
                      str(bundle), "--with-image")  # fmt: skip
        assert exported.exit_code == 0, exported.output
        assert target.inspect_image(image.id) is None

        here = tmp_path / "elsewhere"
        replay = cx(here, "--engine", replayed, "repro", str(bundle))
        assert replay.exit_code == 3, replay.output
        assert replay.stdout.strip().splitlines()[-1] == "reproduced: exit 3, same as recorded"
        assert "from the bundle, ID verified" in replay.stderr
        again = RunStore(here).load_run("last")
        assert again.engine is not None and again.engine.name == replayed
        loaded = target.inspect_image(image.id)
        assert loaded is not None and loaded.id == image.id
    finally:
        for engine in (source, target):
            with contextlib.suppress(Exception):
                engine.remove_image(image.id)
            engine.close()
