"""Which engine runs (issue 23.1): --engine, then CONTAINEREXEC_ENGINE, then the nearest
containerexec.toml, then docker; runs record it, and a worker uses the recorded one."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fake_cli import FakeWorkspace, fake_workspace  # noqa: F401
from fakes import FakeEngine

from containerexec.cli import App, cli
from containerexec.engine.base import EngineIdentity
from containerexec.engine.factory import make_engine
from containerexec.engine.selection import Selected, selected_engine
from containerexec.errors import UsageError

SPEC = "environment: {image: containerexec/base:bookworm}\nname: hello\ncommand: [echo, hi]\n"


def toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "containerexec.toml"
    path.write_text(text)
    return path


def test_the_environment_beats_the_nearest_config_file_which_beats_the_default(
    tmp_path: Path,
) -> None:
    deep = tmp_path / "project" / "src" / "deeper"
    deep.mkdir(parents=True)
    assert selected_engine({}, deep) == Selected("docker", "the default")

    path = toml(tmp_path / "project", '[engine]\nname = "podman"\n')
    assert selected_engine({}, deep) == Selected("podman", str(path))
    nearer = toml(tmp_path / "project" / "src", "[other]\nx = 1\n")  # names no engine
    assert selected_engine({}, deep) == Selected("docker", "the default"), nearer

    env = {"CONTAINEREXEC_ENGINE": "docker"}
    toml(tmp_path / "project" / "src", '[engine]\nname = "podman"\n')
    assert selected_engine(env, deep) == Selected("docker", "CONTAINEREXEC_ENGINE")
    elsewhere = toml(tmp_path / "etc", '[engine]\nname = "docker"\n')
    named = {"CONTAINEREXEC_CONFIG": str(elsewhere)}  # read instead of the search
    assert selected_engine(named, deep) == Selected("docker", str(elsewhere))


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[engine\nname=", "not a readable TOML file"),
        ("engine = 3\n", "[engine] must be a table"),
        ("[engine]\nname = 3\n", "engine.name must be a string"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path: Path, text: str, phrase: str) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(UsageError) as info:
        selected_engine({}, tmp_path)
    assert str(info.value).startswith(f"{path}: ") and phrase in str(info.value)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_an_unknown_engine_says_where_its_name_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINEREXEC_ENGINE", "nerd")
    with pytest.raises(UsageError, match=r"'nerd' \(from CONTAINEREXEC_ENGINE\); known: docker"):
        make_engine()
    monkeypatch.delenv("CONTAINEREXEC_ENGINE")
    path = toml(tmp_path, '[engine]\nname = "crio"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=rf"'crio' \(from {path}\); known: docker, podman"):
        make_engine()


def invoke(tmp_path: Path, *args: str, env: dict[str, str]) -> Result:
    spec = tmp_path / "module.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    # docker-py leaks its socket when connecting to a missing unix socket fails.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        result = CliRunner().invoke(
            cli, [*args, "--runs-dir", str(runs), "run", str(spec)], obj=App(runs), env=env
        )
        gc.collect()
    return result


def test_the_engine_option_beats_the_environment(tmp_path: Path) -> None:
    env = {"CONTAINEREXEC_ENGINE": "nerd", "DOCKER_HOST": "unix:///nonexistent.sock"}
    named = invoke(tmp_path, env=env)
    assert named.exit_code == 2, named.output
    assert "no container engine 'nerd' (from CONTAINEREXEC_ENGINE)" in named.stderr

    flagged = invoke(tmp_path, "--engine", "docker", env=env)
    assert flagged.exit_code == 1, flagged.output
    assert flagged.stderr.startswith("Error: No Docker engine answers at unix:///nonexistent")

    wrong = invoke(tmp_path, "--engine", "nerd", env={})
    assert wrong.exit_code == 2 and "'nerd' is not one of 'docker', 'podman'" in wrong.stderr


def test_a_run_records_its_engine_and_a_worker_uses_it(workspace: FakeWorkspace) -> None:
    workspace.engine.ident = EngineIdentity("podman", "4.3.1")
    spec = workspace.spec("name: hello\ncommand: [echo, hi]\n")
    done = workspace.cli("run", str(spec))
    assert done.returncode == 0, done.stderr
    record = workspace.record()
    assert record.engine is not None
    assert (record.engine.name, record.engine.version) == ("podman", "4.3.1")

    app = App(Path("runs"))
    app.use_recorded("podman")
    assert app.engine_name == "podman"
    flagged = App(Path("runs"), engine_name="docker")
    flagged.use_recorded("podman")  # --engine given to the worker stays
    assert flagged.engine_name == "docker"


def test_a_limit_the_engine_cannot_set_here_is_refused_before_anything_is_written(
    workspace: FakeWorkspace,
) -> None:
    engine: FakeEngine = workspace.engine
    engine.ident = EngineIdentity(
        "podman", "4.3.1", rootless=True, cannot_limit=("memory", "cpus", "pids")
    )
    spec = workspace.spec("name: big\ncommand: [echo, hi]\nresources: {memory: 64m}\n")
    done = workspace.cli("run", str(spec))
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert line.startswith("Error: module 'big' sets resources.memory, and podman rootless")
    assert "cannot limit memory on this host" in line and "\n" not in line
    assert engine.created == [] and workspace.store.ids() == []
