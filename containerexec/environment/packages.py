"""Python packages on the host: ask the image for its platform, resolve and download wheels
with the host's pip, and keep them in a wheel cache so a rebuild from a lock needs no index.

pip runs on the host because the host already reaches the package index through the
user's own settings (index URL, proxy, certificates: pip.conf and PIP_* variables);
a build gets no network at all. Wheels only: nothing is compiled, so what the lock
names is exactly what gets installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from containerexec.engine.base import Engine
from containerexec.environment.locks import Lock, LockedFile, Target, normalize, wheel_file
from containerexec.errors import EngineError, PackageError
from containerexec.labels import LABEL_MANAGED, LABEL_MODULE
from containerexec.model.invocation import Invocation
from containerexec.store.manifests import sha256_file

Say = Callable[[str], None]

# Run inside the image: its interpreter, ABI and platform. `packaging` (when the image has
# it) knows the exact tags; else the libc version gives the manylinux ones.
PROBE = """
import json, platform, sys, sysconfig
try:
    from packaging import tags
    platforms = list(dict.fromkeys(t.platform for t in tags.sys_tags()))
except Exception:
    platforms = None
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "implementation": sys.implementation.name,
    "abi_tag": (sysconfig.get_config_var("SOABI") or "").split("-")[1:2],
    "platform": sysconfig.get_platform(),
    "libc": platform.libc_ver(),
    "platforms": platforms,
}))
"""
_IMPLEMENTATIONS = {"cpython": "cp", "pypy": "pp"}
# pip's answers that mean the index never answered, rather than "no such file there".
_UNREACHABLE = (
    "NewConnectionError",
    "Connection refused",
    "Max retries exceeded",
    "ProxyError",
    "CERTIFICATE_VERIFY_FAILED",
    "SSLError",
    "Temporary failure in name resolution",
)


def wheel_cache() -> Path:
    """Where downloaded wheels are kept: $CONTAINEREXEC_WHEEL_CACHE, else
    $XDG_CACHE_HOME/containerexec/wheels (~/.cache/containerexec/wheels)."""
    if os.environ.get("CONTAINEREXEC_WHEEL_CACHE"):
        return Path(os.environ["CONTAINEREXEC_WHEEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "containerexec" / "wheels"


def probe(engine: Engine, module: str, image: str) -> Target:
    """Ask `image` itself which interpreter and platform its wheels must fit.

    Raises:
        PackageError: the image has no python3, or its answer makes no sense.
    """
    inv = Invocation(
        run_id="probe",
        module=module,
        image=image,
        argv=["python3", "-c", PROBE],
        env={"HOME": "/tmp"},
        user=f"{os.getuid()}:{os.getgid()}",
        labels={LABEL_MANAGED: "1", LABEL_MODULE: module},
        name=f"cx-probe-{uuid.uuid4().hex[:12]}",
    )
    out: list[bytes] = []
    cid = engine.create(inv, secrets={})
    try:
        stream = engine.attach(cid)
        engine.start(cid)
        for chunk, err in stream:
            out.append(chunk or err or b"")
        status = engine.wait(cid, timeout_s=60)
    except EngineError as exc:
        raise PackageError(
            module,
            f"could not ask image '{image}' for its Python ({exc}); environment.python "
            "needs an image with python3",
        ) from None
    finally:
        engine.remove(cid)
    text = b"".join(out).decode(errors="replace").strip()
    if status.exit_code != 0:
        raise PackageError(
            module,
            f"image '{image}' did not answer which Python it has (exit {status.exit_code}: "
            f"{text[-200:]!r}); environment.python needs an image with python3",
        )
    try:
        facts = json.loads(text.splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise PackageError(
            module, f"image '{image}' gave no answer about its Python: {text[-200:]!r}"
        ) from None
    return target_of(facts, module, image)


def target_of(facts: dict[str, object], module: str, image: str) -> Target:
    """The image's answer to PROBE, as the tags pip downloads for."""
    impl = _IMPLEMENTATIONS.get(str(facts["implementation"]), str(facts["implementation"]))
    python = str(facts["python"])
    nodot = python.replace(".", "")
    abi = facts.get("abi_tag") or []
    abi_tag = f"{impl}{nodot}"
    if isinstance(abi, list) and abi and str(abi[0]).startswith("cpython-"):
        abi_tag = "cp" + str(abi[0]).removeprefix("cpython-")
    platforms = facts.get("platforms")
    if not isinstance(platforms, list) or not platforms:
        platforms = derived_platforms(str(facts["platform"]), facts.get("libc"))
    if not platforms:
        raise PackageError(
            module, f"image '{image}' runs on '{facts['platform']}', not a Linux platform"
        )
    return Target(
        python=python, implementation=impl, abi=abi_tag, platforms=[str(p) for p in platforms]
    )


def derived_platforms(platform: str, libc: object) -> list[str]:
    """The platform tags of a Linux image with no `packaging`, from its libc (PEP 600/656)."""
    if not platform.startswith("linux-"):
        return []
    arch = platform.removeprefix("linux-").replace("-", "_").replace(".", "_")
    tags: list[str] = []
    name, version = (list(libc) + ["", ""])[:2] if isinstance(libc, list | tuple) else ("", "")
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if name == "glibc" and m and m.group(1) == "2":
        oldest = 5 if arch in ("x86_64", "i686") else 17
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for minor in range(int(m.group(2)), oldest - 1, -1):
            tags.append(f"manylinux_2_{minor}_{arch}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{arch}")
    return [*tags, f"linux_{arch}"]


def resolve(
    module: str,
    requires: Sequence[str],
    target: Target,
    *,
    cache: Path,
    say: Say | None = None,
) -> Lock:
    """Resolve `requires` (and a pip to install them) to wheels for `target`, with the
    host's pip and its settings; the wheels land in `cache`; returns the lock.

    Raises:
        PackageError: naming the package with no fitting wheel, or the index that did
            not answer, in one line.
    """
    say = say or (lambda _: None)
    say(f"resolving {', '.join(requires)} for {target.describe()} with this host's pip")
    with tempfile.TemporaryDirectory(prefix="containerexec-wheels-") as tmp:
        dest = Path(tmp) / "wheels"
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join([*requires, "pip"]) + "\n")
        _pip(module, ["download", *_for(target), "-d", str(dest), "-r", str(reqs)], target, say)
        files = [_keep(path, cache) for path in sorted(dest.glob("*.whl"))]
    installer = next((f for f in files if f.name == "pip"), None)
    if installer is None:  # pip resolved nothing for itself: no release fits the target
        raise PackageError(module, f"found no pip wheel for {target.describe()}")
    declared_pip = any(normalize(re.split(r"[\s<>=!~;\[]", r)[0]) == "pip" for r in requires)
    packages = [f for f in files if f.name != "pip" or declared_pip]
    return Lock(
        module=module,
        requires=sorted(requires),
        target=target,
        installer=installer,
        packages=packages,
    )


def fetch(lock: Lock, *, cache: Path, say: Say | None = None) -> dict[str, Path]:
    """Every file of `lock` in the wheel cache, hash checked; the missing ones downloaded
    by exact version and hash. A lock whose files are all cached needs no index at all.

    Raises:
        PackageError: a file is missing and pip cannot get it.
    """
    say = say or (lambda _: None)
    found: dict[str, Path] = {}
    missing: list[LockedFile] = []
    for f in lock.files():
        path = cache / f.file
        if path.is_file() and sha256_file(path) == f.sha256:
            found[f.file] = path
        else:
            missing.append(f)
    if not missing:
        return found
    say(f"downloading {len(missing)} locked file(s) missing from the wheel cache {cache}")
    with tempfile.TemporaryDirectory(prefix="containerexec-wheels-") as tmp:
        dest = Path(tmp) / "wheels"
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text(
            "".join(f"{f.name}=={f.version} --hash=sha256:{f.sha256}\n" for f in missing)
        )
        args = ["download", *_for(lock.target), "--no-deps", "--require-hashes"]
        try:
            _pip(lock.module, [*args, "-d", str(dest), "-r", str(reqs)], lock.target, say)
        except PackageError as exc:
            names = ", ".join(f.file for f in missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise PackageError(
                lock.module,
                f"{len(missing)} locked file(s) are not in the wheel cache {cache} ({names}) "
                f"and pip could not download them: {exc.message}",
                package=missing[0].name,
            ) from None
        for f in missing:
            path = dest / f.file
            if not path.is_file() or sha256_file(path) != f.sha256:
                raise PackageError(
                    lock.module,
                    f"the index no longer serves the locked file {f.file} (sha256 {f.sha256[:12]}"
                    "...); run 'containerexec lock SPEC' to resolve again",
                    package=f.name,
                )
            _keep(path, cache)
            found[f.file] = cache / f.file
    return found


def _for(target: Target) -> list[str]:
    """pip's options for wheels that fit `target`, and nothing but wheels."""
    args = ["--only-binary=:all:", "--python-version", target.python]
    args += ["--implementation", target.implementation, "--abi", target.abi]
    for p in target.platforms:
        args += ["--platform", p]
    return [*args, "--progress-bar", "off", "--disable-pip-version-check"]


def _keep(path: Path, cache: Path) -> LockedFile:
    """Copy a downloaded wheel into the cache (write, then rename: never half a file)."""
    digest = sha256_file(path)
    cache.mkdir(parents=True, exist_ok=True)
    kept = cache / path.name
    if not (kept.is_file() and sha256_file(kept) == digest):
        tmp = cache / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        shutil.copyfile(path, tmp)
        tmp.replace(kept)
    return wheel_file(path.name, digest)


def _pip(module: str, args: list[str], target: Target, say: Say) -> None:
    """Run the host's pip, passing its progress on; a failure becomes one clear line."""
    cmd = [sys.executable, "-m", "pip", *args]
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise PackageError(module, f"cannot run pip ({exc})") from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip()
            lines.append(line)
            if line.lstrip().startswith(("Collecting ", "Downloading ")):
                say(line.strip().split(" (from -r ", 1)[0])  # not our temporary file's name
    if proc.returncode != 0:
        raise _failure(module, lines, target)


def _failure(module: str, lines: list[str], target: Target) -> PackageError:
    text = "\n".join(lines)
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR: ")]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    if "No module named pip" in text:
        return PackageError(
            module,
            f"this Python ({sys.executable}) has no pip to resolve packages with; "
            "install it ('python -m ensurepip')",
        )
    if any(marker in text for marker in _UNREACHABLE):
        return PackageError(
            module,
            f"{_index(text)} did not answer pip ({_cause(text)}); check pip's settings on "
            "this host (PIP_INDEX_URL, proxy, certificates) and retry; a module with a lock "
            "and its wheels in the cache builds without the index",
        )
    m = re.search(r"No matching distribution found for (\S+)", text)
    if m:
        req = m.group(1)
        name = re.split(r"[<>=!~;\[]", req)[0]
        versions = _versions(name)
        if versions:
            return PackageError(
                module,
                f"package '{req}' has no wheel for {target.describe()} (the index has "
                f"versions {', '.join(versions[:5])}, none as a wheel that fits); containerexec "
                "installs wheels only: pick a version or package that publishes one, or "
                "install it in a Dockerfile (environment.build)",
                package=name,
                platform=target.describe(),
            )
        return PackageError(
            module,
            f"package '{req}' is not on the package index (pip: {last}); check its name",
            package=name,
        )
    return PackageError(module, f"pip could not resolve the packages: {last}")


def _index(text: str) -> str:
    """'the package index URL', as pip announced it; no URL when pip used its default."""
    m = re.search(r"Looking in indexes: (\S+)", text)
    return f"the package index {m.group(1).rstrip(',')}" if m else "the package index"


def _cause(text: str) -> str:
    """The gist of pip's connection failure, without urllib3's object reprs."""
    m = re.search(
        r"(Failed to establish a new connection: [^'\")]+|CERTIFICATE_VERIFY_FAILED[^'\")]*"
        r"|ProxyError[^'\")]*|Temporary failure in name resolution)",
        text,
    )
    return m.group(1).strip() if m else "no answer"


def _versions(name: str) -> list[str]:
    """The versions the index has of `name`, wheels or not; [] when it has none."""
    cmd = [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    m = re.search(r"Available versions: (.+)", done.stdout)
    return [v.strip() for v in m.group(1).split(",")] if m else []
