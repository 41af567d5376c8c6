"""Rootless Podman (issue 23.2): an unprivileged user the test creates runs a module through
the Podman service containerexec starts for them; the outputs are theirs (keep-id), the run
records a rootless engine, and a limit the host cannot set for them is refused in one line.
Runs where the engine under test is Podman (`make test ENGINE=podman`, `make test-podman`)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BASE_IMAGE, TEST_ENGINE, skip_or_fail

from containerexec.store.tree import RunStore

pytestmark = pytest.mark.podman

USER = "cxrootless"
ROOT = Path(__file__).resolve().parents[2]
SPEC = """\
name: {name}
environment: {{image: {image}}}
inputs: {{data: {{type: directory}}}}
outputs: {{out: {{type: directory}}}}
command: [sh, -c, "id -u > $0/uid; cp $1/x $0/", "${{{{outputs.out}}}}", "${{{{inputs.data}}}}"]
{extra}"""


def as_user(user: pwd.struct_passwd, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`argv` as `user`, in a login-like environment with their runtime folder."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}",
        "PYTHONPATH": f"{ROOT}:{site}",  # the code under test; this venv's interpreter is root's
    }
    cmd = ["runuser", "-u", user.pw_name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return subprocess.run(
        [*cmd, *argv], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the user can reach (pytest's own are root's alone), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="cx-rootless-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def rootless_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user with subordinate ids, a runtime folder, overlay storage and the
    base image in it; kept between sessions (made once, like the base image)."""
    if TEST_ENGINE != "podman":
        pytest.skip("runs with the Podman engine tests (make test ENGINE=podman)")
    if os.geteuid() != 0:
        skip_or_fail("creating the rootless test user needs root")
    python = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if python.stdout.strip() != str(sys.version_info[:2]):
        skip_or_fail(f"/usr/bin/python3 is not Python {sys.version_info[:2]} like the venv")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        user = pwd.getpwnam(USER)
    with open("/etc/subuid") as f:
        if not any(line.startswith(f"{USER}:") for line in f):
            pytest.fail(f"useradd gave {USER} no subordinate ids in /etc/subuid", pytrace=False)
    runtime = Path(f"/run/user/{user.pw_uid}")
    runtime.mkdir(parents=True, exist_ok=True)
    os.chown(runtime, user.pw_uid, user.pw_gid)
    runtime.chmod(0o700)
    conf = Path(user.pw_dir) / ".config" / "containers" / "storage.conf"
    if not conf.exists():  # overlay: vfs copies the whole image per container (9-12 s)
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text('[storage]\ndriver = "overlay"\n')
        subprocess.run(["chown", "-R", f"{USER}:", str(Path(user.pw_dir) / ".config")], check=True)
    here = Path("/")
    if as_user(user, "podman", "image", "exists", BASE_IMAGE, cwd=here).returncode != 0:
        with tempfile.TemporaryDirectory(prefix="cx-rootless-") as folder:
            Path(folder).chmod(0o755)
            tar = Path(folder) / "base.tar"
            subprocess.run(["podman", "save", "-q", "-o", str(tar), BASE_IMAGE], check=True)
            tar.chmod(0o644)
            loaded = as_user(user, "podman", "load", "-i", str(tar), cwd=here)
            assert loaded.returncode == 0, loaded.stderr
    yield user


def test_a_rootless_user_runs_a_module_and_owns_its_outputs(
    rootless_user: pwd.struct_passwd, shared_tmp: Path
) -> None:
    user = rootless_user
    work = shared_tmp / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "x").write_text("hi\n")
    (work / "ok.yaml").write_text(SPEC.format(name="rl-ok", image=BASE_IMAGE, extra=""))
    limited = "resources: {memory: 64m}\n"
    (work / "big.yaml").write_text(SPEC.format(name="rl-big", image=BASE_IMAGE, extra=limited))
    subprocess.run(["chown", "-R", f"{USER}:", str(work)], check=True)
    cx = ["/usr/bin/python3", "-m", "containerexec", "--engine", "podman", "run"]
    service = Path(f"/run/user/{user.pw_uid}/podman/podman.sock")
    try:
        done = as_user(user, *cx, "ok.yaml", "-i", "data=data", "-o", "out=out", cwd=work)
        assert done.returncode == 0, done.stderr
        assert service.is_socket()  # containerexec started the user's service
        for name in ("uid", "x"):
            owner = (work / "out" / name).stat()
            assert (owner.st_uid, owner.st_gid) == (user.pw_uid, user.pw_gid), name
        assert (work / "out" / "uid").read_text().strip() == str(user.pw_uid)
        record = RunStore(work / ".containerexec").load_run("last")
        assert record.engine is not None
        assert (record.engine.name, record.engine.rootless) == ("podman", True)

        refused = as_user(user, *cx, "big.yaml", "-i", "data=data", "-o", "out=out2", cwd=work)
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip()
        cgroup_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
        if cgroup_v1:  # no delegation of any controller to a user on cgroup v1
            assert line.startswith("Error: module 'rl-big' sets resources.memory, and podman "
                                   "rootless cannot limit memory on this host"), line  # fmt: skip
            assert "\n" not in line and not (work / "out2").exists()
    finally:
        # The service containerexec started ends after its idle time; the test ends it now.
        found = subprocess.run(
            ["pgrep", "-u", user.pw_name, "-f", "podman system service"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        for pid in found.stdout.split():
            os.kill(int(pid), signal.SIGTERM)
