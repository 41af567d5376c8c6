"""Which engine a command uses when none is named: CONTAINEREXEC_ENGINE, then the
`[engine] name` of a containerexec.toml in the working folder or its parents (or of the
file CONTAINEREXEC_CONFIG names, as for the [slurm] table), then docker.

The command line's `--engine` and the Python API's `engine=` name come first; they
pass the name to `make_engine` and never reach this module.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from containerexec.errors import UsageError

ENV_VAR = "CONTAINEREXEC_ENGINE"
CONFIG_FILE = "containerexec.toml"
CONFIG_VAR = "CONTAINEREXEC_CONFIG"  # a config file elsewhere: read instead of the search
DEFAULT_ENGINE = "docker"


@dataclass(frozen=True)
class Selected:
    name: str
    source: str  # where the name came from, for error messages: "CONTAINEREXEC_ENGINE", a path


def config_file(start: Path) -> Path | None:
    """The containerexec.toml nearest `start` (itself, then its parents), if any."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def configured_engine(path: Path) -> str | None:
    """The `[engine] name` of the config file `path`; None when it names none.

    Raises:
        UsageError: the file is not TOML, or `engine.name` is not a string.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML file ({exc}); fix or remove it") from None
    section = data.get("engine", {})
    if not isinstance(section, dict):
        raise UsageError(f'{path}: [engine] must be a table, e.g. [engine] name = "podman"')
    name = section.get("name")
    if name is not None and not isinstance(name, str):
        raise UsageError(f'{path}: engine.name must be a string such as "podman", got {name!r}')
    return name


def selected_engine(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Selected:
    """The engine to use when none is named: the environment, the config file, docker."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Selected(env[ENV_VAR], ENV_VAR)
    if env.get(CONFIG_VAR):
        given = Path(env[CONFIG_VAR])
        path = given if given.is_file() else None
    else:
        path = config_file((cwd or Path.cwd()).absolute())
    if path is not None:
        name = configured_engine(path)
        if name:
            return Selected(name, str(path))
    return Selected(DEFAULT_ENGINE, "the default")
