"""In-container entry of a Python module: rebuild its source, then call one function or shard.

This file is never imported by containerexec: its text travels in the container's
environment (CONTAINEREXEC_PY_BOOT) and runs there with only the standard library.
The module's source file arrives compressed in CONTAINEREXEC_PY_SOURCE; a stand-in
`containerexec` package lets its imports and decorators work unchanged. argv holds
NAME=VALUE pairs; CONTAINEREXEC_PY_ENTRY (JSON) says what to call and how to type them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import linecache
import os
import pathlib
import sys
import types
import typing
import zlib
from typing import Any

PORT_TYPES = ("file", "directory")


class _Inert:
    """Stands for any other containerexec name: it only matters where pipelines are driven."""

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return self

    def __getattr__(self, name: str) -> _Inert:
        return self


def _stand_in() -> None:
    """A `containerexec` package good enough for a module's imports and decorators."""
    pkg = types.ModuleType("containerexec")
    pkg.__path__ = []
    api = types.ModuleType("containerexec.authoring")

    def decorator(fn: Any = None, /, **_options: Any) -> Any:
        return fn if fn is not None else (lambda f: f)

    class ContainerModule:
        def __init__(self, config: Any = None) -> None:
            self.config = config

        def array(self) -> Any:
            return None

        def requirements(self) -> Any:
            return None

        def name(self) -> str:
            return type(self).__name__.lower()

        def comment(self) -> str | None:
            return None

    @dataclasses.dataclass
    class Requirements:
        cpus: typing.Any = None
        memory: typing.Any = None
        timeout: typing.Any = None
        shm_size: typing.Any = None
        max_parallel: typing.Any = None

    def marker(kind: str) -> Any:
        return typing.Annotated[pathlib.Path, "containerexec:" + kind]

    api.__dict__.update(
        module=decorator,
        pipeline=decorator,
        ContainerModule=ContainerModule,
        Requirements=Requirements,
        InputFile=marker("input-file"),
        InputDir=marker("input-dir"),
        OutputFile=marker("output-file"),
        OutputDir=marker("output-dir"),
        ShardIndex=typing.Annotated[int, "containerexec:index"],
        ShardValue=typing.Annotated[str, "containerexec:value"],
        ShardFile=marker("shard-file"),
        # Pipelines are wired where they are driven; inside a container they are inert.
        from_yaml=_Inert(),
        from_func=_Inert(),
        __getattr__=lambda name: _Inert(),
    )
    pkg.__dict__["authoring"] = api
    for name in dir(api):
        if not name.startswith("_"):
            setattr(pkg, name, getattr(api, name))
    sys.modules.setdefault("containerexec", pkg)
    sys.modules.setdefault("containerexec.authoring", api)


def _load(entry: dict[str, Any]) -> types.ModuleType:
    """Execute the shipped source as a module named after its file."""
    source = zlib.decompress(base64.b64decode(os.environ["CONTAINEREXEC_PY_SOURCE"])).decode()
    filename = entry["file"]
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    stem = pathlib.Path(filename).stem
    name = stem if stem.isidentifier() and stem not in sys.modules else "containerexec_module"
    mod = types.ModuleType(name)
    mod.__file__ = filename
    # dataclasses and typing look a class's module up in sys.modules.
    sys.modules[name] = mod
    exec(compile(source, filename, "exec"), mod.__dict__)
    return mod


def _convert(kind: str, text: str) -> Any:
    if kind in PORT_TYPES:
        return pathlib.Path(text)
    if kind in ("integer", "index"):
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text == "true"
    return text


def _arguments(entry: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    out = {}
    for pair in argv:
        name, _, text = pair.partition("=")
        out[name] = _convert(entry["types"][name], text)
    return out


def _folder(shard_file: pathlib.Path) -> pathlib.Path:
    """The glob's folder in the container: the shard's file less its value (a relative path)."""
    value = os.environ.get("CONTAINEREXEC_SHARD_VALUE", "")
    return pathlib.Path(str(shard_file)[: -len(value) - 1])


def _shard_value(entry: dict[str, Any]) -> Any:
    if "shard_file" in entry:
        return entry["shard_file"]
    text = os.environ.get("CONTAINEREXEC_SHARD_VALUE", "")
    if not entry.get("array"):
        return None
    return json.loads(text) if entry.get("array_json") else text


def main(argv: list[str]) -> None:
    entry = json.loads(os.environ["CONTAINEREXEC_PY_ENTRY"])
    _stand_in()
    _give_back(entry, _call(entry, _load(entry), argv))


def _call(entry: dict[str, Any], mod: types.ModuleType, argv: list[str]) -> Any:
    """Call the function (or a new instance's run) for one value; its returned value."""
    target = getattr(mod, entry["object"])
    target = getattr(target, "__wrapped__", target)
    values = _arguments(entry, argv)
    if entry["kind"] == "function":
        result = target(**values)
    else:
        glob = entry.get("glob_input")
        if glob:  # iteration_value is the shard's file; a field of that name, its folder
            entry["shard_file"] = values.pop(glob)
            if entry.get("glob_field"):
                values[glob] = _folder(entry["shard_file"])
        config: Any = {**entry.get("config", {}), **values}
        if entry.get("config_class"):
            config = getattr(mod, entry["config_class"])(**config)
        elif entry.get("config_none"):
            config = None
        instance = target(config)
        listing = os.environ.get("CONTAINEREXEC_PY_ARRAY")
        if listing:  # the run's shards: array.python, listed when a run starts
            values = getattr(instance, listing)()
            result = [None] if values is None else list(values)
        else:
            index = int(os.environ.get("CONTAINEREXEC_SHARD_INDEX", "0"))
            result = instance.run(iteration_value=_shard_value(entry), iteration_index=index)
    return result


def _give_back(entry: dict[str, Any], result: Any) -> None:
    """Write the returned value as JSON where containerexec reads it after the shard."""
    where = os.environ.get("CONTAINEREXEC_RETURN_FILE")
    if not where or not os.path.isdir(os.path.dirname(where)):
        # Not run by containerexec (a plain `docker run`, a test): show it, as before.
        if result is not None:
            print(f"containerexec: {entry['object']} returned {result!r}", file=sys.stderr)
        return
    try:
        text = json.dumps(result, default=_path_text, allow_nan=False)
    except (TypeError, ValueError) as exc:
        shard = os.environ.get("CONTAINEREXEC_SHARD_INDEX", "0")
        raise SystemExit(
            f"containerexec: shard {shard} of module '{entry.get('module', entry['object'])}': "
            f"{entry['object']} returned a value that is not JSON-serialisable "
            f"({type(result).__name__}: {exc}); return None, str, int, float, bool, "
            "a Path, or lists and dicts of them"
        ) from None
    tmp = where + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, where)


def _path_text(value: Any) -> str:
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# -- packed values: many in one interpreter (run/packing/pydriver.py drives this) -------

SERVE = "CONTAINEREXEC_PY_SERVE"  # "<request fd>,<reply fd>", set by pydriver.py


def serve(channel: str) -> None:
    """Call the function for each value the driver sends, in this one interpreter.

    The module is imported once (at the first value, so what that prints is in its log);
    each request line (JSON: argv, env, out, err) is one value with its own environment,
    arguments and output files, and gets one reply line: its exit status as `python3`
    would give it, and 1 when it left a thread running, after which this interpreter
    ends (the driver starts another for the next value) so the thread writes nowhere.
    """
    import threading
    import traceback

    rfd, wfd = (int(n) for n in channel.split(","))
    entry = json.loads(os.environ["CONTAINEREXEC_PY_ENTRY"])
    _stand_in()
    home, mod, threads = os.getcwd(), None, threading.active_count()
    with os.fdopen(rfd) as requests, os.fdopen(wfd, "w") as replies:
        for line in requests:
            job = json.loads(line)
            os.environ.clear()
            os.environ.update(job["env"])
            sys.argv = ["-c", *job["argv"]]
            _redirect(job["out"], job["err"])
            try:
                if mod is None:
                    mod = _load(entry)
                _give_back(entry, _call(entry, mod, job["argv"]))
                code = 0
            except SystemExit as exc:  # as the interpreter exits on it
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                if not isinstance(exc.code, int | None):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            _redirect(os.devnull, os.devnull)
            os.chdir(home)
            left = threading.active_count() > threads
            replies.write(f"{code & 0xFF} {int(left)}\n")
            replies.flush()
            if left:
                os._exit(0)


def _redirect(out: str, err: str) -> None:
    """Point fds 1 and 2 (and so sys.stdout, sys.stderr and child processes) at files."""
    for stream, fd, path in ((sys.stdout, 1, out), (sys.stderr, 2, err)):
        stream.flush()
        new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(new, fd)
        os.close(new)


if __name__ == "__main__":  # `python3 -c` runs this text as __main__
    if os.environ.get(SERVE):
        serve(os.environ.pop(SERVE))
    else:
        main(sys.argv[1:])
