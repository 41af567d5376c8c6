"""Python functions and ContainerModule classes -> module specs whose command runs them.

The generated spec is self-sufficient: its environment carries the module's whole
source file (compressed) and a small stdlib-only entry (entry.py), so the image
needs python3 and nothing from containerexec. Parameters become ports:

    def count(corpus: InputDir, counts: OutputDir, min_count: int = 1) -> None
      -> inputs {corpus: directory, min_count: integer (default 1)}, outputs {counts}
      -> argv  python3 -c "<launch>" corpus=/inputs/corpus counts=/outputs/counts min_count=1

A ShardFile parameter of a glob array gets `${{inputs.X}}/${{shard.value}}` and nothing
else names X, so each shard mounts and is keyed on its own file (model/invocation.py).
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import inspect
import json
import re
import types
import typing
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from containerexec.authoring.specfile import SpecFile, source_stamp
from containerexec.errors import UsageError
from containerexec.model.spec import ModuleSpec, validate_spec
from containerexec.run import returned

ENV_BOOT = "CONTAINEREXEC_PY_BOOT"
ENV_SOURCE = "CONTAINEREXEC_PY_SOURCE"
ENV_ENTRY = "CONTAINEREXEC_PY_ENTRY"
LAUNCH = f"import os; exec(os.environ['{ENV_BOOT}'])"
# One environment string may hold at most 128 KiB (Linux MAX_ARG_STRLEN).
MAX_SOURCE_CHARS = 120_000
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Marker:
    """What an Annotated parameter is: a port (file/directory) or a shard field."""

    role: Literal["input", "output", "shard"]
    type: str


InputFile = Annotated[Path, Marker("input", "file")]
InputDir = Annotated[Path, Marker("input", "directory")]
OutputFile = Annotated[Path, Marker("output", "file")]
OutputDir = Annotated[Path, Marker("output", "directory")]
ShardIndex = Annotated[int, Marker("shard", "index")]
ShardValue = Annotated[str, Marker("shard", "value")]
# The path of a glob shard's own file; the glob's folder is then mounted file by file.
ShardFile = Annotated[Path, Marker("shard", "file")]


@dataclass(frozen=True)
class Param:
    """One parameter (or config field) and the port it becomes."""

    name: str
    role: Literal["input", "output", "shard", "fixed"]
    type: str
    default: Any = _EMPTY
    optional: bool = False

    def argv(self, glob_input: str | None = None) -> str | list[str]:
        """The NAME=VALUE argv item; a shard file is `glob_input`'s folder joined to the value."""
        if self.role == "shard" and self.type == "file":
            return f"{self.name}=${{{{inputs.{glob_input}}}}}/${{{{shard.value}}}}"
        ref = {"input": "inputs", "output": "outputs", "shard": "shard"}[self.role]
        field = self.type if self.role == "shard" else self.name
        item = f"{self.name}=${{{{{ref}.{field}}}}}"
        return [item] if self.optional else item


@dataclass(frozen=True)
class Source:
    """The file a module's code lives in and the top-level name to call there."""

    path: Path
    object: str

    @classmethod
    def of(cls, obj: Any) -> Source:
        """Where `obj` (a function or class) is defined; it must be reachable by name."""
        where = getattr(obj, "__qualname__", repr(obj))
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            path = None
        if path is None or not Path(path).is_file():
            raise UsageError(
                f"'{where}' has no source file (defined interactively?); "
                "put it in a .py file so its source can run in the container"
            )
        if "." in where or "<" in where:
            raise UsageError(
                f"'{where}' in {path} is not defined at the top level of its "
                "file; move it there so the container can find it by name"
            )
        return cls(Path(path).resolve(), where)

    def encoded(self) -> str:
        """The source file, zlib-compressed and base64-encoded for the environment."""
        text = base64.b64encode(zlib.compress(self.path.read_bytes(), 9)).decode()
        if len(text) > MAX_SOURCE_CHARS:
            raise UsageError(
                f"{self.path}: too large to ship in the environment "
                f"({len(text)} encoded chars > {MAX_SOURCE_CHARS}); move helpers "
                "into the image and import them"
            )
        return text


def classify(name: str, hint: Any, default: Any, where: str, *, fixed_ok: bool) -> Param:
    """The Param of one annotated name; `fixed_ok` lets other JSON values through (configs)."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            hint, optional = args[0], True
    if typing.get_origin(hint) is Annotated:
        marks = [m for m in hint.__metadata__ if isinstance(m, Marker)]
        if marks:
            return Param(name, marks[0].role, marks[0].type, default, optional)
        hint = typing.get_args(hint)[0]
    if hint in _SCALARS:
        return Param(name, "input", _SCALARS[hint], default, optional or default is None)
    if fixed_ok:
        return Param(name, "fixed", "json", default)
    shown = getattr(hint, "__name__", str(hint))
    if hint is Path or hint is inspect.Parameter.empty:
        kinds = (
            "InputFile, InputDir, OutputFile or OutputDir"
            if hint is Path
            else "str, int, float, bool, InputFile, InputDir, OutputFile or OutputDir"
        )
        raise UsageError(f"{where}: parameter '{name}' ({shown}) needs an annotation: {kinds}")
    raise UsageError(
        f"{where}: parameter '{name}' has type '{shown}'; a module takes str, "
        "int, float, bool, InputFile, InputDir, OutputFile, OutputDir, "
        "ShardIndex, ShardValue or ShardFile"
    )


def function_params(fn: Callable[..., Any]) -> list[Param]:
    """The ports of a function's parameters, in order."""
    where = f"{getattr(fn, '__module__', '?')}.{fn.__qualname__}"
    hints = typing.get_type_hints(fn, include_extras=True)
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UsageError(f"{where}: *{p.name} cannot become a port; name each parameter")
        hint = hints.get(p.name, inspect.Parameter.empty)
        params.append(classify(p.name, hint, p.default, where, fixed_ok=False))
    return params


def config_params(config: Any, where: str) -> tuple[list[Param], dict[str, Any]]:
    """A dataclass config -> its fields' Params, and the values they hold now."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    params, values = [], {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        params.append(classify(f.name, hints.get(f.name, Any), value, where, fixed_ok=True))
        values[f.name] = value
    return params, values


def module_name(text: str) -> str:
    """'WordCount' or 'word_count' -> a valid spec name ('wordcount', 'word_count')."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._")
    return name[:64] or "module"


def first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n", 1)[0] if doc else ""


def param_docs(doc: str | None) -> dict[str, str]:
    """The Google-style `Args:` section of a docstring: {name: description}."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:"))
    except StopIteration:
        return out
    indent, name = None, ""
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent or depth == 0:
            break
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?:\s*(.*)$", line)
        if depth == indent and m:
            name, out[m.group(1)] = m.group(1), m.group(2)
        elif name:
            out[name] = f"{out[name]} {line.strip()}".strip()
    return out


def environment(
    image: str | None,
    build: str | Mapping[str, Any] | None,
    where: str,
    packages: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The spec's environment; `packages` alone installs on the base image."""
    python = {"python": {"packages": list(packages)}} if packages else {}
    given = (image is not None) + (build is not None)
    if given > 1 or (given == 0 and not python):
        raise UsageError(
            f"{where}: give exactly one of image=... or build=... (a folder with "
            "a Dockerfile, relative to the source file), or packages=[...] alone"
        )
    if image is not None:
        return {"image": image, **python}
    if build is not None:
        return {"build": {"context": build} if isinstance(build, str) else dict(build), **python}
    return python


def entry_text() -> str:
    return (Path(__file__).parent / "entry.py").read_text()


def function_call(
    source: str, filename: str, function: str, types: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The command head and environment that call `function(NAME=VALUE...)` of a module
    whose source text formats/ generated (amlparallel.py): the same entry as a @module's,
    so packed values share one interpreter (run/packing/pyvalues.py). `types` gives each
    NAME's type ('string', 'integer', ...)."""
    entry = {"file": filename, "object": function, "kind": "function", "types": dict(types)}
    encoded = base64.b64encode(zlib.compress(source.encode(), 9)).decode()
    env = {ENV_ENTRY: json.dumps(entry, sort_keys=True), ENV_SOURCE: encoded}
    return ["python3", "-c", LAUNCH], {**env, ENV_BOOT: entry_text()}


def build_spec(
    *,
    source: Source,
    kind: Literal["function", "class"],
    params: list[Param],
    settings: Mapping[str, Any],
    extra_entry: Mapping[str, Any] | None = None,
) -> tuple[ModuleSpec, SpecFile]:
    """The ModuleSpec, with every check a YAML file gets, and the file to write it as."""
    where = f"{source.path.name}:{source.object}"
    array = settings.get("array")
    glob = glob_input(array)
    ports = [p for p in params if p.role != "fixed"]
    docs = settings.get("docs") or {}
    extra = dict(extra_entry or {})
    if kind == "class" and glob is not None:
        ports, extra = _class_glob(ports, glob, where), {**extra, "glob_input": glob}
    files = [p.name for p in ports if p.role == "shard" and p.type == "file"]
    if files and glob is None:
        raise UsageError(
            f"{where}: parameter '{files[0]}' is a ShardFile, which needs a glob array: "
            "array={'glob': {'input': 'corpus', 'pattern': '*.txt'}}"
        )
    if array is None and any(p.role == "shard" for p in ports):
        raise UsageError(f"{where}: ShardIndex/ShardValue parameters need array=...")
    inputs = {p.name: input_port(p, docs) for p in ports if p.role == "input"}
    if files and glob is not None and glob not in inputs:
        inputs[glob] = _glob_folder(glob, [p.name for p in params], where)
    entry = {
        "file": source.path.name,
        "object": source.object,
        "kind": kind,
        "types": {p.name: p.type for p in ports},
        "array": array is not None,
        "module": settings["name"],
        **extra,
    }
    data: dict[str, Any] = {
        "name": settings["name"],
        "version": settings.get("version") or "0.0.0",
        "description": settings.get("description") or "",
        "source": source_stamp(source.path, source.object),
        "environment": settings["environment"],
        "inputs": inputs,
        "outputs": {
            p.name: _described({"type": p.type}, docs.get(p.name))
            for p in ports
            if p.role == "output"
        },
        "command": ["python3", "-c", LAUNCH, *(p.argv(glob) for p in ports)],
        "env": {
            **dict(settings.get("env") or {}),
            ENV_ENTRY: json.dumps(entry, sort_keys=True),
            returned.ENV_FILE: returned.CONTAINER_FILE,
            ENV_SOURCE: source.encoded(),
            ENV_BOOT: entry_text(),
        },
    }
    for key in ("array", "resources", "retries", "secrets", "network", "cache"):
        if settings.get(key) is not None:
            data[key] = _plain(settings[key])
    header = (
        f"Generated from {where} by containerexec; edit the Python and regenerate: "
        f"containerexec spec build {source.path.name}:{source.object}"
    )
    return validate_spec(data, where), SpecFile(data=data, header=header)


def glob_input(array: Any) -> str | None:
    """The input a glob array walks (`array={'glob': {'input': ...}}`), else None."""
    glob = array.get("glob") if isinstance(array, Mapping) else None
    name = glob.get("input") if isinstance(glob, Mapping) else None
    return name if isinstance(name, str) else None


def _class_glob(ports: list[Param], glob: str, where: str) -> list[Param]:
    """A ContainerModule's ports for a glob array: the argv item named after the glob's input
    carries the shard's file (run() gets it as iteration_value), never the whole folder."""
    field = next((p for p in ports if p.name == glob), None)
    if field is not None and (field.role, field.type) != ("input", "directory"):
        raise UsageError(
            f"{where}: config field '{glob}' is an {field.role} {field.type}; the glob "
            "array walks it, so annotate it InputDir"
        )
    shard_file = Param(glob, "shard", "file")
    return [p for p in ports if p.name != glob] + [shard_file]


def _glob_folder(glob: str, names: list[str], where: str) -> dict[str, Any]:
    """The directory input a ShardFile's glob walks when no parameter declares it; a name
    close to a parameter's is a typo, not a new input."""
    near = [] if glob in names else difflib.get_close_matches(glob, names, n=1)
    if near:
        raise UsageError(
            f"{where}: array.glob.input: '{glob}' names no parameter; did you mean '{near[0]}'?"
        )
    return {"type": "directory", "description": "The folder the glob array walks."}


def input_port(p: Param, docs: Mapping[str, str], *, path_defaults: bool = False) -> dict[str, Any]:
    """The spec declaration of an input parameter."""
    port: dict[str, Any] = {"type": p.type}
    paths = p.type in ("file", "directory")
    if p.default is not _EMPTY and p.default is not None and (path_defaults or not paths):
        port["default"] = str(p.default) if isinstance(p.default, Path) else p.default
    if p.optional or p.default is None:
        port["optional"] = True
    return _described(port, docs.get(p.name))


def _described(port: dict[str, Any], doc: str | None) -> dict[str, Any]:
    return {**port, "description": doc} if doc else port


def _plain(value: Any) -> Any:
    """Pydantic models, dataclasses, tuples and paths -> the plain data a YAML file holds."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_defaults=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_ports(
    config: Any, source: Source, where: str
) -> tuple[list[Param], dict[str, Any], dict[str, Any]]:
    """A ContainerModule's config (dataclass, dict or None) -> its ports, the default
    bindings of its path fields, and the entry's fixed JSON."""
    if config is None:
        return [], {}, {"config_none": True}
    if isinstance(config, Mapping):
        return [], {}, {"config": _json(dict(config), where)}
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise UsageError(
            f"{where}: config must be a dataclass instance, a dict or None, "
            f"got {type(config).__name__}"
        )
    if Source.of(type(config)).path != source.path:
        raise UsageError(
            f"{where}: config class {type(config).__name__} must be defined in "
            f"{source.path.name}, which is all the container gets"
        )
    params, values = config_params(config, where)
    ports = [p for p in params if p.role in ("input", "output")]
    fixed = {p.name: values[p.name] for p in params if p.role == "fixed"}
    defaults = {
        p.name: values[p.name]
        for p in ports
        if p.type in ("file", "directory") and values[p.name] is not None
    }
    return ports, defaults, {"config": _json(fixed, where), "config_class": type(config).__name__}


def _json(value: dict[str, Any], where: str) -> dict[str, Any]:
    """`value` as the JSON the entry reads back (paths as text); UsageError if it is not."""
    try:
        return dict(json.loads(json.dumps(value, default=_path_text)))
    except TypeError as exc:
        raise UsageError(f"{where}: the config must be JSON-serializable: {exc}") from None


def _path_text(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
