"""Declared Python packages on the real engine, resolved through this host's pip and its real
package index: they run, they are not rebuilt, a lock rebuilds with the index unreachable, a
changed set is refused then rebuilt once, bad packages fail in one line; build.network; and
the base image's own pip.

The numbers the issue asks for are printed (run with -s to see them)."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import BASE_IMAGE, local_engine
from workspace import Workspace, workspace_fixture  # noqa: F401

from containerexec.authoring.targets import load_target
from containerexec.environment import images
from containerexec.labels import LABEL_MODULE
from containerexec.model.spec import load_spec
from containerexec.run.executor import RunOptions

# An index nothing listens on; with no pip configuration file, it is the only index pip has.
OFFLINE = {
    "PIP_CONFIG_FILE": "/dev/null",
    "PIP_INDEX_URL": "http://127.0.0.1:9/",
    "PIP_EXTRA_INDEX_URL": "",
    "PIP_FIND_LINKS": "",
    "PIP_RETRIES": "1",
}
MODULE_SCRIPT = (
    "import sys, regex, six; "
    "print(regex.sub(r'\\p{L}+', 'W', 'héllo wörld 42'), 'six', six.__version__); "
    "sys.exit(int(sys.argv[1]))"
)


def name() -> str:
    return f"pk-{uuid.uuid4().hex[:8]}"


def remove_module_images(module: str) -> None:
    with local_engine() as engine:
        for info in engine.images({LABEL_MODULE: module}):
            for ref in info.tags or [info.id]:
                engine.remove_image(ref)


def write_spec(folder: Path, module: str, environment: str, command: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {module}
            environment: {environment}
            inputs:
              code: {{type: integer, default: 0}}
            command: {command}
            """
        )
    )
    return path


@dataclass
class Built:
    """The regex + six module, built once for the tests of this file."""

    spec: Path
    module: str
    lock: Path
    first_build_s: float
    stderr: str


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One wheel cache for this file, so PyPI is asked once per package set."""
    cache = tmp_path_factory.mktemp("wheels")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINEREXEC_WHEEL_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def built(
    wheel_cache: Path, tmp_path_factory: pytest.TempPathFactory, test_session_label: dict[str, str]
) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("regexmod")
    module = name()
    spec = write_spec(
        folder,
        module,
        "{python: {packages: [regex, six]}}",
        json.dumps(["python3", "-c", MODULE_SCRIPT, "${{inputs.code}}"]),
    )
    ws = Workspace(folder, test_session_label)
    started = time.perf_counter()
    done = ws.cli("build", str(spec), timeout_s=600)
    first = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    yield Built(spec, module, folder / f"{module}.lock", first, done.stderr)
    remove_module_images(module)


def test_a_module_importing_regex_and_six_runs_and_an_unchanged_set_is_not_rebuilt(
    built: Built, workspace: Workspace
) -> None:
    err = built.stderr
    assert "packages: resolving regex, six for cp311 manylinux_2_36_x86_64" in err
    assert "packages: Downloading regex-" in err or "packages: Collecting regex" in err
    assert f"packages: wrote {built.lock}" in err and "installing 2 locked packages" in err
    lock_sha = hashlib.sha256(built.lock.read_bytes()).hexdigest()
    assert '"name": "regex"' in built.lock.read_text()

    done = workspace.cli("run", str(built.spec), timeout_s=300)
    assert done.returncode == 0, done.stderr
    assert "W W 42 six 1.17.0" in done.stdout
    assert "Step " not in done.stderr and "resolving" not in done.stderr  # nothing rebuilt
    record = workspace.record()
    assert record.image.lock_sha256 == lock_sha and record.image.ref.startswith(
        f"containerexec/{built.module}:py-"
    )

    # The no-change check: the lock read and compared, the tag looked up; no probe.
    spec = load_spec(built.spec)
    with local_engine() as engine:
        again = images.resolve(engine, spec, built.spec.parent)
        assert again.id == record.image.id
        started = time.perf_counter()
        for _ in range(10):
            images.resolve(engine, spec, built.spec.parent)
        check_ms = (time.perf_counter() - started) / 10 * 1000
        base = engine.inspect_image(BASE_IMAGE)
        mine = engine.inspect_image(again.id)
        assert base is not None and mine is not None
        added = mine.size - base.size
    print(
        f"\nfirst build (probe, resolve, download, install): {built.first_build_s:.1f} s; "
        f"no-change check {check_ms:.1f} ms; image size added {added / 1e6:.2f} MB"
    )
    assert check_ms < 500
    assert 0 < added < 30e6

    # A failure of this module replays with its packages, and repro names the lock.
    failed = workspace.cli("run", str(built.spec), "-i", "code=3", timeout_s=300)
    assert failed.returncode == 3, failed.stderr
    replay = workspace.cli("repro", "last", timeout_s=300)
    assert replay.returncode == 3, replay.stderr
    assert f"packages: lock sha256:{lock_sha}" in replay.stderr
    assert "reproduced: exit 3, same as recorded" in replay.stdout


def test_a_rebuild_from_the_lock_needs_no_index(
    built: Built, workspace: Workspace, wheel_cache: Path
) -> None:
    spec = load_spec(built.spec)
    with local_engine() as engine:
        before = images.resolve(engine, spec, built.spec.parent)
        engine.remove_image(before.ref)
        assert engine.inspect_image(before.ref) is None

    started = time.perf_counter()
    done = workspace.cli("build", str(built.spec), env=OFFLINE, timeout_s=600)
    rebuild_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "Step " in done.stderr and "resolving" not in done.stderr
    assert "downloading" not in done.stderr  # every locked file came from the cache
    ran = workspace.cli("run", str(built.spec), env=OFFLINE, timeout_s=300)
    assert ran.returncode == 0, ran.stderr
    assert "W W 42 six 1.17.0" in ran.stdout
    print(f"\nrebuild from the lock, index unreachable: {rebuild_s:.1f} s")

    # The control: without the cached wheels, the same build needs the index and says so.
    with local_engine() as engine:
        engine.remove_image(before.ref)
    empty = workspace.root / "empty-cache"
    failed = workspace.cli(
        "build",
        str(built.spec),
        env={**OFFLINE, "CONTAINEREXEC_WHEEL_CACHE": str(empty)},
        timeout_s=600,
    )
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: module '{built.module}': 3 locked file(s) are not in")
    assert "the package index http://127.0.0.1:9/ did not answer pip" in lines[-1]
    assert "Traceback" not in failed.stderr


def test_a_changed_package_set_is_refused_then_relocked_and_rebuilt_once(
    built: Built, workspace: Workspace
) -> None:
    # A copy of the built module under another name, on an `image:` this time.
    module = name()
    folder = workspace.root / "changed"
    text = built.spec.read_text().replace(built.module, module)
    text = text.replace(
        "{python: {packages: [regex, six]}}",
        f"{{image: '{BASE_IMAGE}', python: {{packages: [regex]}}}}",
    )
    text = text.replace("import sys, regex, six", "import sys, regex").replace(
        ", 'six', six.__version__", ""
    )
    folder.mkdir()
    spec = folder / "changed.yaml"
    spec.write_text(text)
    shutil.copy(built.lock, folder / f"{module}.lock")
    try:
        refused = workspace.cli("build", str(spec), timeout_s=300)
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [
            f"Error: module '{module}': environment.python changed since the lock "
            f"{folder / (module + '.lock')} was written; run 'containerexec lock SPEC' to "
            "resolve the packages again:",
            "  - six",
        ]
        started = time.perf_counter()
        relocked = workspace.cli("lock", str(spec), timeout_s=300)
        resolve_s = time.perf_counter() - started
        assert relocked.returncode == 0, relocked.stderr
        assert relocked.stdout.splitlines() == [
            f"{folder / (module + '.lock')}: updated",
            "  - six 1.17.0",
        ]
        unchanged = workspace.cli("lock", str(spec), timeout_s=300)
        assert unchanged.stdout.strip().endswith("unchanged (1 packages)"), unchanged.stdout

        first = workspace.cli("build", str(spec), timeout_s=600)
        assert first.returncode == 0, first.stderr
        assert "installing 1 locked packages" in first.stderr and "Step " in first.stderr
        second = workspace.cli("build", str(spec), timeout_s=300)
        assert second.returncode == 0 and "Step " not in second.stderr
        assert first.stdout.split()[1] == second.stdout.split()[1]  # the same image
        ran = workspace.cli("run", str(spec), timeout_s=300)
        assert ran.returncode == 0 and "W W 42" in ran.stdout, ran.stderr
        print(f"\nresolve (lock: probe + pip download): {resolve_s:.1f} s")
    finally:
        remove_module_images(module)


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        (
            "containerexec-no-such-package-i12",
            "package 'containerexec-no-such-package-i12' is not on the package index "
            "(pip: No matching distribution found for containerexec-no-such-package-i12); "
            "check its name",
        ),
        (
            "docopt",  # a real package that publishes source distributions only
            "package 'docopt' has no wheel for cp311 manylinux_2_36_x86_64 (the index has "
            "versions 0.6.2,",
        ),
    ],
)
def test_a_package_that_cannot_be_had_fails_in_one_line(
    workspace: Workspace, wheel_cache: Path, package: str, expected: str
) -> None:
    module = name()
    spec = write_spec(
        workspace.root, module, f"{{python: {{packages: [six, {package}]}}}}", '["true"]'
    )
    done = workspace.cli("build", str(spec), timeout_s=300)
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if not ln.startswith("packages: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: module '{module}': {expected}"), errors[0]
    assert not (workspace.root / f"{module}.lock").exists()


def test_build_network_host_gives_run_steps_the_hosts_network(workspace: Workspace) -> None:
    context = workspace.folder(
        "ctx", {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN ls /sys/class/net > /nets\n"}
    )
    found = {}
    for network in ("none", "host"):
        module = name()
        spec = write_spec(
            workspace.root,
            module,
            f"{{build: {{context: {context}, network: {network}}}}}",
            "[cat, /nets]",
        )
        try:
            done = workspace.cli("run", str(spec), timeout_s=300)
            assert done.returncode == 0, done.stderr
            found[network] = done.stdout.splitlines()[:-1]  # the last line is the run id
        finally:
            remove_module_images(module)
    assert found["none"] == ["lo"]
    assert set(found["host"]) > {"lo"}  # the host's interfaces


def test_the_base_image_runs_pip_install_and_a_python_module_gets_packages_on_a_build(
    built: Built, wheel_cache: Path, workspace: Workspace
) -> None:
    # An ordinary `RUN pip install` in a Dockerfile FROM the base image (from a wheel in
    # the context: the build has no network), plus declared packages on top of that build.
    six = next(wheel_cache.glob("six-*.whl"))
    context = workspace.folder("image")
    shutil.copy(six, context / six.name)
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY {six.name} /tmp/\n"
        f"RUN pip install --no-index /tmp/{six.name} && echo from-dockerfile > /marker\n"
    )
    module = name().replace("-", "_")
    source = workspace.root / f"{module}.py"
    source.write_text(
        textwrap.dedent(
            f"""
            from containerexec.authoring import OutputDir, module

            @module(name="{module.replace("_", "-")}", build="image", packages=["regex"])
            def {module}(out: OutputDir) -> None:
                import regex, six
                marker = open("/marker").read().strip()
                (out / "seen.txt").write_text(f"{{marker}} six {{six.__version__}} "
                                              f"regex {{regex.sub('a+', 'b', 'caaat')}}")
            """
        )
    )
    mod = load_target(f"{source}:{module}")
    try:
        out = workspace.root / "out"
        mod.run(
            runs_dir=workspace.runs_dir,
            options=RunOptions(labels=workspace.labels),
            out=out,
        )
        assert (out / "seen.txt").read_text() == "from-dockerfile six 1.17.0 regex cbt"
        assert (workspace.root / f"{mod.name}.lock").is_file()  # beside the source file
    finally:
        remove_module_images(mod.name)
