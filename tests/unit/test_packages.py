"""Declared Python packages without Docker or an index: the spec fields, the lock and its
checks, platform tags, the image tag, pip's failures worded, and the authoring options."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from containerexec.authoring.targets import load_target
from containerexec.cli import cli
from containerexec.environment import images, locks, packages, pyimage
from containerexec.environment.locks import Lock, LockedFile, Target
from containerexec.errors import PackageError, SpecError
from containerexec.model.spec import BASE_IMAGE, ModuleSpec, parse_spec

TARGET = Target(python="3.11", implementation="cp", abi="cp311", platforms=["linux_x86_64"])
SHA = "0" * 64


def spec(environment: str) -> ModuleSpec:
    return parse_spec(f"name: m\nenvironment: {environment}\ncommand: [python3]\n", "m.yaml")


def a_lock(*packages: tuple[str, str], requires: list[str] | None = None) -> Lock:
    files = [
        LockedFile(name=n, version=v, file=f"{n}-{v}-py3-none-any.whl", sha256=SHA)
        for n, v in packages
    ]
    pip = LockedFile(name="pip", version="26.3", file="pip-26.3-py3-none-any.whl", sha256=SHA)
    return Lock(
        module="m",
        requires=requires if requires is not None else [n for n, _ in packages],
        target=TARGET,
        installer=pip,
        packages=files,
    )


def test_python_packages_alone_install_on_the_base_image() -> None:
    m = spec("{python: {packages: [regex, 'six==1.17.0']}}")
    assert m.environment.image is None and m.environment.build is None
    assert m.environment.python is not None
    assert m.environment.python.packages == ["regex", "six==1.17.0"]
    assert BASE_IMAGE == "containerexec/base:bookworm"
    with_image = spec("{image: 'containerexec/base:bookworm', python: {requirements: req.txt}}")
    assert with_image.environment.python is not None
    assert with_image.environment.python.requirements == "req.txt"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ("{python: {}}", "environment.python: expected 'packages', 'requirements' or both"),
        ("{python: {packages: ['--index-url=x']}}", "pip options go in the requirements file"),
        ("{python: {pakages: [x]}}", "did you mean 'packages'?"),
        ("{}", "expected exactly one of 'image' or 'build' (or 'python' alone)"),
        ("{build: {context: ., network: bridge}}", "environment.build.network: expected 'none'"),
    ],
)
def test_bad_python_and_network_settings_are_located(environment: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(environment)
    assert message in str(err.value), str(err.value)
    assert "m.yaml:2:" in str(err.value)


def test_build_network_changes_the_context_hash_only_when_set(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    plain = images.context_hash(tmp_path, "Dockerfile", {}, None)
    assert images.context_hash(tmp_path, "Dockerfile", {}, None, None) == plain
    host = images.context_hash(tmp_path, "Dockerfile", {}, None, "host")
    assert host != plain != images.context_hash(tmp_path, "Dockerfile", {}, None, "none")


def test_declared_merges_packages_and_the_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "req.txt").write_text("# pinned\nsix==1.17.0  # why\n\nregex\n")
    python = spec("{python: {packages: [attrs, regex], requirements: req.txt}}").environment.python
    assert python is not None
    assert locks.declared("m", python, tmp_path) == ["attrs", "regex", "six==1.17.0"]
    with pytest.raises(PackageError, match=r"environment.python.requirements: cannot read"):
        locks.declared("m", python, tmp_path / "elsewhere")


def test_a_lock_round_trips_canonically_and_its_hash_is_the_files(tmp_path: Path) -> None:
    lock = a_lock(("regex", "2026.11.19"), ("six", "1.17.0"))
    path = locks.lock_path("m", tmp_path)
    assert path == tmp_path / "m.lock"
    locks.write_lock(path, lock)
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == lock.sha256()
    assert locks.read_lock(path, "m") == lock
    assert locks.read_lock(tmp_path / "none.lock", "m") is None
    path.write_text('{"schema_version": 1}')
    with pytest.raises(PackageError, match=r"is not a valid lock .*containerexec lock SPEC"):
        locks.read_lock(path, "m")


def test_what_changed_is_said_for_requires_and_for_locks() -> None:
    old = a_lock(("regex", "1.0"), ("six", "1.17.0"))
    assert locks.requires_changes(old, ["regex", "six"]) == []
    assert locks.requires_changes(old, ["regex", "numpy"]) == ["+ numpy", "- six"]
    new = a_lock(("regex", "2.0"), ("attrs", "23.1"))
    assert locks.diff(old, new) == ["+ attrs 23.1", "~ regex 1.0 -> 2.0", "- six 1.17.0"]
    assert locks.diff(old, old) == []
    assert locks.diff(None, new) == ["+ regex 2.0", "+ attrs 23.1"]


def test_wheel_names_give_the_project_and_version() -> None:
    f = locks.wheel_file("Foo_Bar-1.2.3-cp311-cp311-manylinux_2_17_x86_64.whl", SHA)
    assert (f.name, f.version) == ("foo-bar", "1.2.3")


def test_platform_tags_come_from_packaging_else_from_the_libc() -> None:
    derived = packages.derived_platforms("linux-x86_64", ["glibc", "2.36"])
    assert derived[:2] == ["manylinux_2_36_x86_64", "manylinux_2_35_x86_64"]
    assert "manylinux2014_x86_64" in derived and "manylinux1_x86_64" in derived
    assert derived[-1] == "linux_x86_64"
    arm = packages.derived_platforms("linux-aarch64", ["glibc", "2.31"])
    assert arm[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert packages.derived_platforms("linux-x86_64", ["", ""]) == ["linux_x86_64"]
    facts = {
        "python": "3.11",
        "implementation": "cpython",
        "abi_tag": ["cpython-311"],
        "platform": "linux-x86_64",
        "libc": ["glibc", "2.36"],
        "platforms": ["manylinux_2_36_x86_64", "linux_x86_64"],
    }
    target = packages.target_of(facts, "m", "img")
    assert (target.implementation, target.abi, target.platforms[0]) == (
        "cp",
        "cp311",
        "manylinux_2_36_x86_64",
    )
    assert target.describe() == "cp311 manylinux_2_36_x86_64"
    with pytest.raises(PackageError, match="not a Linux platform"):
        packages.target_of({**facts, "platforms": None, "platform": "win-amd64"}, "m", "img")


def test_the_image_tag_hashes_the_base_the_lock_and_the_recipe() -> None:
    lock = a_lock(("six", "1.17.0"))
    tag = pyimage.packages_tag("m", "sha256:aaa", lock)
    assert tag.startswith("containerexec/m:py-") and len(tag.split("py-")[1]) == 16
    assert tag == pyimage.packages_tag("m", "sha256:aaa", lock)
    assert tag != pyimage.packages_tag("m", "sha256:bbb", lock)
    assert tag != pyimage.packages_tag("m", "sha256:aaa", a_lock(("six", "1.16.0")))


def test_pips_failures_become_one_line_naming_the_index() -> None:
    lines = [
        "Looking in indexes: http://127.0.0.1:9/",
        "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError("
        "'<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish "
        "a new connection: [Errno 111] Connection refused')': /six/",
        "ERROR: No matching distribution found for six==1.17.0",
    ]
    text = str(packages._failure("m", lines, TARGET))
    assert text == (
        "module 'm': the package index http://127.0.0.1:9/ did not answer pip (Failed to "
        "establish a new connection: [Errno 111] Connection refused); check pip's settings "
        "on this host (PIP_INDEX_URL, proxy, certificates) and retry; a module with a lock "
        "and its wheels in the cache builds without the index"
    )
    assert "\n" not in text
    other = str(packages._failure("m", ["ERROR: ResolutionImpossible: a vs b"], TARGET))
    assert other == "module 'm': pip could not resolve the packages: ResolutionImpossible: a vs b"


def test_a_lock_whose_declared_packages_changed_is_refused_with_the_change(
    tmp_path: Path,
) -> None:
    m = spec("{python: {packages: [regex, numpy]}}")
    locks.write_lock(locks.lock_path("m", tmp_path), a_lock(("regex", "1"), ("six", "1")))
    base = images.ImageRecord(ref="b", pinned="sha256:b", id="sha256:b", source="local")
    # The refusal comes before any engine call: the engine is never touched.
    with pytest.raises(PackageError) as err:
        pyimage.install(None, m, tmp_path, base)  # type: ignore[arg-type]
    assert str(err.value).splitlines() == [
        f"module 'm': environment.python changed since the lock {tmp_path / 'm.lock'} was "
        "written; run 'containerexec lock SPEC' to resolve the packages again:",
        "  + numpy",
        "  - six",
    ]
    assert err.value.changes == ["+ numpy", "- six"]


def test_lock_refuses_a_spec_without_packages_before_any_engine(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nenvironment: {image: x}\ncommand: [python3]\n")
    result = CliRunner().invoke(cli, ["--runs-dir", str(tmp_path), "lock", str(path)])
    assert result.exit_code == 2
    assert "declares no environment.python; no lock" in result.output


def test_authoring_declares_packages_for_functions_and_classes(tmp_path: Path) -> None:
    source = tmp_path / "pkgmods.py"
    source.write_text(
        textwrap.dedent(
            """
            from containerexec.authoring import ContainerModule, module

            @module(packages=["regex"])
            def alone(text: str) -> None:
                import regex

            @module(image="containerexec/base:bookworm", packages=["six"])
            def on_image(text: str) -> None:
                import six

            class Counter(ContainerModule):
                packages = ["regex==2026.11.19"]

                def run(self, iteration_value=None, iteration_index=0):
                    return None
            """
        )
    )
    alone = load_target(f"{source}:alone").spec.environment
    assert alone.image is None and alone.python.packages == ["regex"]
    on_image = load_target(f"{source}:on_image").spec.environment
    assert on_image.image == "containerexec/base:bookworm"
    assert on_image.python.packages == ["six"]
    counter = load_target(f"{source}:Counter")().as_module().spec.environment
    assert counter.python.packages == ["regex==2026.11.19"]
    assert json.loads(json.dumps(counter.model_dump()))["python"]["requirements"] is None
