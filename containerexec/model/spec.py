"""The module spec: pydantic models, and load_spec(path) with located errors."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from containerexec.errors import Problem, SpecError
from containerexec.model import placeholders, yamlsource

InputType = Literal["file", "directory", "string", "integer", "number", "boolean"]
OutputType = Literal["file", "directory"]
NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bytes(value: Any) -> int:
    """'512m', '1.5g', '2GiB' or an integer -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '512m' or '2g', got {value!r}")
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(value))
    if not m:
        raise ValueError(f"expected a size like '512m' or '2g', got '{value}'")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_seconds(value: Any) -> float:
    """'10m', '1h30m', '45s' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s' or '10m', got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", str(value))
    if not parts or re.sub(r"[\d.\s]+[smhd]", "", str(value)).strip():
        raise ValueError(f"expected a duration like '30s', '10m' or '1h30m', got '{value}'")
    return sum(float(n) * _SECONDS[u] for n, u in parts)


Bytes = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(parse_seconds), Field(gt=0)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildSpec(Model):
    """A folder with a Dockerfile, built by the engine and tagged by its content hash."""

    context: str = Field(description="Build folder, relative to the spec file.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile, relative to the context.")
    target: str | None = Field(None, description="Multi-stage target to build.")
    args: dict[str, str] = Field(default_factory=dict, description="Build arguments.")
    network: Literal["none", "host"] | None = Field(
        None,
        description="The build's network: 'none', or 'host' (the engine's host network) for "
        "RUN steps that download; unset: the engine's default.",
    )


# The image environment.python installs onto when the spec names no image and no build.
BASE_IMAGE = "containerexec/base:bookworm"


class PythonPackages(Model):
    """Python packages on top of the image: resolved on the host, locked, installed offline."""

    packages: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Requirement specifiers, e.g. 'regex' or 'six==1.17'."
    )
    requirements: str | None = Field(
        None, description="A requirements file, relative to the spec file."
    )

    @field_validator("packages")
    @classmethod
    def _no_options(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.strip().startswith("-"):
                raise ValueError(
                    f"expected a requirement like 'regex>=2024', got '{item}'; "
                    "pip options go in the requirements file"
                )
        return value

    @model_validator(mode="after")
    def _something(self) -> PythonPackages:
        if not self.packages and self.requirements is None:
            raise ValueError("expected 'packages', 'requirements' or both")
        return self


class Environment(Model):
    """Where the module runs: an image reference, or a folder to build; plus Python packages."""

    image: str | None = Field(None, description="Image reference, pinned to a digest at run time.")
    build: BuildSpec | None = Field(None, description="A folder with a Dockerfile.")
    pull: Literal["missing", "always", "never"] = Field(
        "missing", description="When to pull `image`."
    )
    python: PythonPackages | None = Field(
        None,
        description=f"Python packages installed on the image (alone: on {BASE_IMAGE}).",
    )

    @field_validator("build", mode="before")
    @classmethod
    def _build_shorthand(cls, value: Any) -> Any:
        return {"context": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> Environment:
        if self.image is not None and self.build is not None:
            raise ValueError("expected exactly one of 'image' or 'build'")
        if self.image is None and self.build is None and self.python is None:
            raise ValueError("expected exactly one of 'image' or 'build' (or 'python' alone)")
        return self


Scalar = bool | int | float | str


class InputPort(Model):
    type: InputType
    optional: bool = False
    default: Scalar | None = None
    description: str = ""

    @model_validator(mode="after")
    def _default_matches(self) -> InputPort:
        if self.default is not None:
            check_value(self.type, self.default)
        return self


class OutputPort(Model):
    type: OutputType
    description: str = ""
    path: str | None = Field(
        None, description="For a file output: its name inside the output folder."
    )

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and not placeholders.is_inside(value):
            raise ValueError(f"must be a relative path inside the output folder, got '{value}'")
        return value


class GlobSpec(Model):
    input: str = Field(description="A directory input to glob in.")
    pattern: str = Field(description="Glob pattern; shard.value is the path relative to the input.")


class LinesSpec(Model):
    input: str = Field(description="A file input; each non-empty line is one shard.")


class ArraySpec(Model):
    """Fan out over shards: exactly one of values, range, glob, lines or python."""

    values: list[Scalar] | None = None
    range: int | None = Field(None, ge=0)
    glob: GlobSpec | None = None
    lines: LinesSpec | None = None
    python: str | None = Field(
        None,
        pattern=NAME_RE,
        description="The method of a ContainerModule (spec build writes 'array') whose list "
        "is the shards: called in the module's image, with the run's inputs, when a run starts.",
    )
    max_parallel: int | None = Field(None, ge=1, description="Default: the number of CPU cores.")
    max_failed_shards: int | None = Field(
        None, ge=1, description="After this many failed shards, no new shard starts."
    )
    allow_empty: bool = Field(
        False, description="Let an array with no element succeed with 0 shards (else exit 2)."
    )
    group: int | None = Field(
        None,
        ge=1,
        description="With glob or lines: this many files or lines per shard, in order; "
        "shard.value is then a JSON list of them (an Azure ML parallel job's mini-batch).",
    )
    batch_size: int | Literal["auto"] | None = Field(
        None,
        description="Run this many shard values one after another inside one container "
        "(each keeps its own argv, env, exit code, log, outputs and record); 'auto' picks it "
        "from the number of shards and max_parallel. Default: one container per shard.",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 or 'auto', got {v}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ArraySpec:
        kinds = ("values", "range", "glob", "lines", "python")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            found = ", ".join(given) or "none"
            raise ValueError(
                f"expected exactly one of 'values', 'range', 'glob', 'lines' or 'python', "
                f"found {found}"
            )
        if self.group is not None and given[0] not in ("glob", "lines"):
            raise ValueError("'group' takes files or lines together: use it with glob or lines")
        return self


# The kernel's default pid_max is at least 1024 per CPU, and a run starts one shard per
# core by default: 512 tasks each leaves the host half its pids even if every shard is
# a fork bomb, and is still room for a process per core with its threads.
DEFAULT_PIDS = 512


class Resources(Model):
    cpus: float | None = Field(None, gt=0)
    memory: Bytes | None = None
    shm_size: Bytes | None = None
    timeout: Seconds | None = None
    deadline: Seconds | None = Field(
        None,
        description="The whole run's time limit (like activeDeadlineSeconds): after it no "
        "attempt starts and running shards are stopped; it outranks retries.",
    )
    pids: int = Field(
        DEFAULT_PIDS,
        ge=2,
        description="Most processes and threads the container may hold at once (a fork "
        "bomb stops there); at least 2: the init and the command.",
    )


class Backoff(Model):
    initial: Seconds = 1.0
    factor: float = Field(2.0, ge=1)
    max: Seconds = 60.0


class RetryPolicy(Model):
    max_attempts: int = Field(1, ge=1)
    on_exit_codes: list[int] | None = Field(
        None, description="Retry only these exit codes (default: any ordinary failure)."
    )
    fail_run_on_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list,
        description="A shard exiting with one of these fails the whole run at once (like "
        "podFailurePolicy FailJob): no retry, no new shard, running shards stopped.",
    )
    backoff: Backoff = Backoff()

    @model_validator(mode="after")
    def _fail_run_not_retried(self) -> RetryPolicy:
        both = sorted(set(self.fail_run_on_exit_codes) & set(self.on_exit_codes or []))
        if both:
            raise ValueError(
                f"exit code {both[0]} is in both 'on_exit_codes' (retry it) and "
                "'fail_run_on_exit_codes' (fail the run at once); keep it in one"
            )
        return self


class SourceStamp(Model):
    """The Python file `spec build` made this spec from, so a stale spec is refused."""

    file: str = Field(description="The source file, relative to the spec file.")
    object: str = Field(pattern=NAME_RE, description="NAME in `spec build SOURCE.py:NAME`.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The source file's, then.")


class ModuleSpec(Model):
    """A module: an environment, a command line, typed inputs and outputs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)
    version: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else str(v))] = (
        "0.0.0"
    )
    description: str = ""
    environment: Environment
    inputs: dict[Annotated[str, Field(pattern=NAME_RE)], InputPort] = Field(default_factory=dict)
    outputs: dict[Annotated[str, Field(pattern=NAME_RE)], OutputPort] = Field(default_factory=dict)
    command: list[str | list[str]] = Field(
        min_length=1, description="argv; a nested list is dropped when an input it uses is unset."
    )
    workdir: str | None = None
    env: dict[Annotated[str, Field(pattern=NAME_RE)], str] = Field(default_factory=dict)
    secrets: list[Annotated[str, Field(pattern=NAME_RE)]] = Field(default_factory=list)
    network: bool = Field(False, description="Give the container a network (off by default).")
    resources: Resources = Resources()
    retries: RetryPolicy = RetryPolicy()
    array: ArraySpec | None = None
    cache: bool = True
    source: SourceStamp | None = Field(
        None, description="Written by `spec build`; validate and run refuse a changed source."
    )

    @field_validator("command")
    @classmethod
    def _no_empty_program(cls, value: list[str | list[str]]) -> list[str | list[str]]:
        if isinstance(value[0], list) or not value[0]:
            raise ValueError("the first element must be the program to run")
        return value


def check_value(type_: str, value: Any) -> Any:
    """Return `value` as `type_`, or raise ValueError saying what was expected."""
    if type_ == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected a boolean (true/false), got '{value}'")
    if type_ == "integer":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got '{value}'")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got '{value}'") from None
    if type_ == "number":
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got '{value}'")
        try:
            return float(value) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError(f"expected a number, got '{value}'") from None
    if isinstance(value, dict | list):
        raise ValueError(
            f"expected a {type_}, got {'a mapping' if isinstance(value, dict) else 'a list'}"
        )
    return str(value)


def load_spec(path: str | Path) -> ModuleSpec:
    """Load and validate a module spec; raise SpecError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            str(path), [Problem(str(path), 0, 0, "", exc.strerror or str(exc))]
        ) from None
    return parse_spec(text, str(path), spec_dir=path.parent)


def parse_spec(text: str, path: str, *, spec_dir: Path | None = None) -> ModuleSpec:
    """Validate spec text; `path` names it in messages. With `spec_dir` (the file's
    folder), a spec made by `spec build` is refused when its source file changed."""
    src = yamlsource.parse(text, path)
    problems = list(src.problems)
    if src.data is None and not problems:
        problems.append(
            Problem(path, 1, 1, "", "expected a module spec (a mapping), found nothing")
        )
    if problems and src.data is None:
        raise SpecError(path, problems)
    if not isinstance(src.data, dict):
        raise SpecError(path, [src.problem((), "expected a mapping of spec fields")])
    spec = _validated(src, problems)
    stale = _stale(spec, Path(path), spec_dir, src) if spec_dir is not None else None
    if stale is not None:
        raise SpecError(path, [stale])
    return spec


def _stale(spec: ModuleSpec, path: Path, spec_dir: Path, src: yamlsource.Located) -> Problem | None:
    """The problem of a spec whose source file changed since `spec build`; a source that
    is not there (the spec travelled alone) is no problem: the spec carries its code."""
    if spec.source is None:
        return None
    source = spec_dir / spec.source.file
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return None
    if digest == spec.source.sha256:
        return None
    shown = os.path.relpath(source)
    command = f"containerexec spec build {shlex.quote(f'{shown}:{spec.source.object}')}"
    if (source.parent / f"{spec.name}.yaml").resolve() != path.resolve():
        command += f" -o {shlex.quote(os.path.relpath(path))}"  # not where it goes by default
    return src.problem(("source", "sha256"), f"{shown} changed since spec build; run `{command}`")


def validate_spec(data: Mapping[str, Any], path: str) -> ModuleSpec:
    """Validate spec data built in code with parse_spec's checks; `path` names it in messages.

    There is no file, so problems carry no line and column, only the key path.
    """
    try:
        return _validated(yamlsource.Located(path, dict(data)), [])
    except SpecError as exc:
        raise SpecError(path, [replace(p, line=0, col=0) for p in exc.problems]) from None


def _validated(src: yamlsource.Located, problems: list[Problem]) -> ModuleSpec:
    """The schema and every placeholder checked together, so one error lists all problems."""
    spec: ModuleSpec | None = None
    try:
        spec = ModuleSpec.model_validate(src.data)
    except ValidationError as exc:
        problems = [*problems, *yamlsource.pydantic_problems(exc, src, ModuleSpec)]
    problems = [*problems, *_placeholder_problems(src), *_array_problems(src)]
    if problems:
        raise SpecError(src.path, sorted(problems, key=lambda p: (p.line, p.col)))
    assert spec is not None
    return spec


def _placeholder_problems(src: yamlsource.Located) -> list[Problem]:
    """Check every placeholder in `command` and `env` of a raw spec against its declarations.

    Works on raw data, so these problems are reported together with schema errors.
    """
    data = src.data if isinstance(src.data, dict) else {}
    declared = {
        kind: set(data[kind]) if isinstance(data.get(kind), dict) else set()
        for kind in ("inputs", "outputs")
    }
    has_array = data.get("array") is not None
    places: list[tuple[yamlsource.Loc, Any]] = []
    command = data.get("command")
    if isinstance(command, list):
        for i, item in enumerate(command):
            if isinstance(item, list):
                places += [(("command", i, j), part) for j, part in enumerate(item)]
            else:
                places.append((("command", i), item))
    env = data.get("env")
    if isinstance(env, dict):
        places += [(("env", k), v) for k, v in env.items()]
    return [
        src.problem(loc, message)
        for loc, text in places
        if isinstance(text, str)
        for message in placeholders.check_text(text, declared, has_array)
    ]


# The input type each kind of array reads: a glob walks a folder, lines reads a file.
_ARRAY_INPUT_TYPES = {"glob": "directory", "lines": "file"}


def _array_problems(src: yamlsource.Located) -> list[Problem]:
    """Check that `array.glob.input` / `array.lines.input` names a declared input of the
    type that array reads. Works on raw data, so these are reported with schema errors."""
    data = src.data if isinstance(src.data, dict) else {}
    array = data.get("array")
    declared = data.get("inputs")
    inputs: dict[Any, Any] = declared if isinstance(declared, dict) else {}
    out: list[Problem] = []
    for kind, wanted in _ARRAY_INPUT_TYPES.items():
        part = array.get(kind) if isinstance(array, dict) else None
        name = part.get("input") if isinstance(part, dict) else None
        if not isinstance(name, str):
            continue
        loc = ("array", kind, "input")
        needs = f"a {kind} array needs a {wanted} input"
        if name not in inputs:
            near = difflib.get_close_matches(name, [str(k) for k in inputs], n=1)
            known = ", ".join(sorted(str(k) for k in inputs)) or "none"
            hint = f"did you mean '{near[0]}'?" if near else f"inputs: {known}; {needs}"
            out.append(src.problem(loc, f"'{name}' names no declared input; {hint}"))
            continue
        port = inputs[name]
        found = port.get("type") if isinstance(port, dict) else None
        if isinstance(found, str) and found != wanted:
            out.append(src.problem(loc, f"input '{name}' is a {found}; {needs} (type: {wanted})"))
    return out
