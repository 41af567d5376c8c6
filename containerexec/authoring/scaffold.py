"""`containerexec init NAME`: a module project from the template, with its spec generated."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from containerexec.authoring.modules import Module
from containerexec.authoring.targets import load_target
from containerexec.errors import UsageError

TEMPLATE = Path(__file__).parent / "templates" / "module"
PLACEHOLDER = "__NAME__"


def init_project(name: str, parent: Path) -> Path:
    """Write `parent/name/`: source, spec, Dockerfile, sample data, a test. Returns the folder."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise UsageError(
            f"'{name}': a module name here is lower case letters, digits and '_', "
            "starting with a letter (it names a Python file and function)"
        )
    folder = parent / name
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"'{folder}' exists and is not empty; choose another name or --dir")
    for src in sorted(TEMPLATE.rglob("*")):
        if src.is_dir() or "__pycache__" in src.parts:
            continue
        rel = src.relative_to(TEMPLATE).as_posix().replace("NAME", name)
        dest = folder / rel.removesuffix(".tmpl")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".tmpl":
            dest.write_text(src.read_text().replace(PLACEHOLDER, name))
        else:
            shutil.copyfile(src, dest)
    made = load_target(f"{folder / name}.py:{name}")
    assert isinstance(made, Module)
    made.write(folder / f"{name}.yaml")
    return folder
