"""Modules from Python: the Module object, @module on a typed function, ContainerModule.

    @module(image="containerexec/base:bookworm", resources={"memory": "256m"})
    def count(corpus: InputDir, counts: OutputDir, min_count: int = 1) -> None:
        ...                                   # runs inside the container

    count.spec        # the ModuleSpec;  count.to_yaml()  its YAML
    count.run(corpus="data", counts="out")   # in a local container, recorded like any run
    count(corpus=Path("data"), counts=Path("out"))   # a plain call, here (for unit tests)

The module's source file is shipped whole inside the spec (see pyfunc.py), so it
must import only what the image has; `containerexec` itself is stood in for there.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import sys
import traceback
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from containerexec.authoring import functions as pyfunc
from containerexec.authoring.functions import Source
from containerexec.engine.base import Engine
from containerexec.engine.docker import DockerEngine
from containerexec.errors import ContainerExecError, UsageError
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions, secrets_from
from containerexec.run.run import RunResult
from containerexec.store.tree import RunStore

RESERVED = ("runs_dir", "engine", "options", "check")


class Module:
    """A module spec plus how to run it here; made from YAML, a function or a ContainerModule."""

    def __init__(
        self,
        spec: ModuleSpec,
        *,
        spec_path: Path | None,
        yaml_text: str,
        defaults: Mapping[str, Any] | None = None,
        func: Callable[..., Any] | None = None,
    ) -> None:
        """`spec_path` is the YAML or Python file relative paths (build context) start from."""
        self.spec = spec
        self.spec_path = spec_path
        self.yaml_text = yaml_text
        self.defaults = dict(defaults or {})
        self.func = func
        if func is not None:
            functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def spec_dir(self) -> Path:
        return self.spec_path.parent if self.spec_path else Path.cwd()

    @classmethod
    def from_yaml(cls, path: str | Path) -> Module:
        """A module from its spec file."""
        path = Path(path).resolve()
        return cls(load_spec(path), spec_path=path, yaml_text=path.read_text())

    @classmethod
    def from_func(cls, obj: Any, **settings: Any) -> Module:
        """A module from a function (settings as for @module) or a ContainerModule."""
        if isinstance(obj, Module):
            return obj
        if isinstance(obj, ContainerModule) or (
            isinstance(obj, type) and issubclass(obj, ContainerModule)
        ):
            instance = obj if isinstance(obj, ContainerModule) else default_instance(obj)
            return instance.as_module()
        if not callable(obj):
            raise UsageError(f"{obj!r} is neither a function nor a ContainerModule")
        made: Module = module(**settings)(obj)
        return made

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The spec's YAML, with a build context made relative to `path`'s folder."""
        to_dir = Path(path).resolve().parent if path else self.spec_dir
        return pyfunc.rebase(self.yaml_text, self.spec, self.spec_dir, to_dir)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(path))
        return path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside a @pipeline function: add a job. Elsewhere: call the function here."""
        from containerexec.authoring import pipelines as pypipeline  # it imports this module

        if pypipeline.building():
            if args:
                raise UsageError(f"module '{self.name}': pass inputs by name in a pipeline")
            return pypipeline.add_job(self, None, kwargs)
        if self.func is None:
            raise UsageError(
                f"module '{self.name}' is a spec, not a function: use .run(...) "
                "to run it, or call it inside a @pipeline function"
            )
        return self.func(*args, **kwargs)

    def job(self, name: str, **inputs: Any) -> Any:
        """Inside a @pipeline function: add a job with this name."""
        from containerexec.authoring import pipelines as pypipeline

        return pypipeline.add_job(self, name, inputs)

    def run(
        self,
        *,
        runs_dir: str | Path = ".containerexec",
        engine: Engine | None = None,
        options: RunOptions | None = None,
        check: bool = True,
        **values: Any,
    ) -> RunResult:
        """Run in local containers through the normal Executor; inputs and outputs by name.

        Outputs not given go inside the run's folder. Raises ShardFailed (its fields:
        module, shard, image, argv, exit code, failure kind, log tail, log path) when a
        shard failed, unless `check=False`.
        """
        values = {**self.defaults, **values}
        outputs = {k: str(v) for k, v in values.items() if k in self.spec.outputs}
        inputs = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in values.items()
            if k not in self.spec.outputs
        }
        secrets = secrets_from(self.spec.secrets, os.environ)
        own = engine is None
        eng = engine or DockerEngine.from_env()
        try:
            executor = Executor(eng, RunStore(Path(runs_dir)), secrets=secrets)
            run = executor.start(
                self.spec, inputs, outputs, spec_path=self.spec_path, options=options
            )
            result = run.wait()
        finally:
            if own and isinstance(eng, DockerEngine):
                eng.api.close()
        return result.check() if check else result


def module(
    fn: Callable[..., Any] | None = None,
    *,
    image: str | None = None,
    build: str | Mapping[str, Any] | None = None,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    resources: Mapping[str, Any] | None = None,
    array: Mapping[str, Any] | None = None,
    retries: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    secrets: list[str] | None = None,
    network: bool | None = None,
) -> Any:
    """Turn a typed function into a Module whose body runs inside the container.

    Parameters annotated InputFile/InputDir/OutputFile/OutputDir become ports;
    str/int/float/bool become inputs (defaults become spec defaults); ShardIndex
    and ShardValue receive the shard of an `array`. `build` is relative to the
    source file.
    """

    def wrap(func: Callable[..., Any]) -> Module:
        source = Source.of(func)
        where = f"{source.path.name}:{source.object}"
        params = pyfunc.function_params(func)
        clash = [p.name for p in params if p.name in RESERVED]
        if clash:
            raise UsageError(
                f"{where}: parameter '{clash[0]}' is reserved by Module.run; rename it"
            )
        settings = {
            "name": name or pyfunc.module_name(func.__name__),
            "version": version,
            "description": description or pyfunc.first_line(func.__doc__),
            "environment": pyfunc.environment(image, build, where),
            "resources": resources,
            "array": array,
            "retries": retries,
            "env": env,
            "secrets": secrets,
            "network": network,
            "docs": pyfunc.param_docs(func.__doc__),
        }
        spec, text = pyfunc.build_spec(
            source=source, kind="function", params=params, settings=settings
        )
        return Module(spec, spec_path=source.path, yaml_text=text, func=func)

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class Requirements:
    """What one shard needs; `requirements()` returns this (or a dict of the same keys)."""

    cpus: float | None = None
    memory: str | int | None = None
    timeout: str | float | None = None
    shm_size: str | int | None = None
    max_parallel: int | None = None

    @classmethod
    def of(cls, value: Any, where: str) -> Requirements:
        """A Requirements, a dict of its fields, or stopes names (cpus_per_task, mem_gb,
        timeout_min)."""
        if value is None or isinstance(value, Requirements):
            return value or cls()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        data = dict(value)
        stopes: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "cpus_per_task": ("cpus", float),
            "mem_gb": ("memory", lambda g: f"{g}g"),
            "timeout_min": ("timeout", lambda m: float(m) * 60),
        }
        for old, (new, convert) in stopes.items():
            if data.get(old) is not None:
                data[new] = convert(data.pop(old))
        data = {k: v for k, v in data.items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"{where}: requirements() key '{unknown[0]}' is not supported; "
                f"known: {', '.join(sorted(known))}, cpus_per_task, mem_gb, "
                "timeout_min"
            )
        return cls(**data)


class ContainerModule:
    """A stopes-style module: `run(iteration_value, iteration_index)` runs in a container.

    Each value of `array()` (computed where the pipeline is driven) is one shard,
    in its own container and process: nothing `run` sets on `self` is shared.
    The config (a dataclass, a dict or None) travels as JSON; dataclass fields
    annotated InputFile/InputDir/OutputFile/OutputDir are mounted, and `run`
    sees them as container paths. Set `image` (or `build`) on the class.
    """

    image: ClassVar[str | None] = None
    build: ClassVar[str | None] = None
    version: ClassVar[str] = "0.0.0"

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def array(self) -> list[Any] | None:
        """The values to fan out over; None runs one shard."""
        return None

    def run(self, iteration_value: Any = None, iteration_index: int = 0) -> Any:
        """The work of one shard, inside the container; every subclass defines it."""
        raise TypeError(f"{type(self).__name__} must define run(iteration_value, iteration_index)")

    def requirements(self) -> Requirements | Mapping[str, Any] | None:
        return None

    def name(self) -> str:
        return pyfunc.module_name(type(self).__name__)

    def comment(self) -> str | None:
        return pyfunc.first_line(type(self).__doc__) or None

    def as_module(self) -> Module:
        """This instance, with its config, as a Module (spec, to_yaml, run)."""
        cls = type(self)
        source = Source.of(cls)
        where = f"{source.path.name}:{source.object}"
        params, defaults, extra = _config_ports(self.config, source, where)
        req = Requirements.of(self.requirements(), where)
        values = self.array()
        array: dict[str, Any] | None = None
        if values is not None:
            values = list(values)
            as_json = not all(isinstance(v, str) for v in values)
            extra["array_json"] = as_json
            array = {"values": [json.dumps(v, sort_keys=True) if as_json else v for v in values]}
            if req.max_parallel:
                array["max_parallel"] = req.max_parallel
        resources = {
            k: v
            for k in ("cpus", "memory", "timeout", "shm_size")
            if (v := getattr(req, k)) is not None
        }
        settings = {
            "name": pyfunc.module_name(self.name()),
            "version": cls.version,
            "description": self.comment() or "",
            "environment": pyfunc.environment(cls.image, cls.build, where),
            "resources": resources or None,
            "array": array,
        }
        spec, text = pyfunc.build_spec(
            source=source, kind="class", params=params, settings=settings, extra_entry=extra
        )
        return Module(spec, spec_path=source.path, yaml_text=text, defaults=defaults)


def _config_ports(
    config: Any, source: Source, where: str
) -> tuple[list[pyfunc.Param], dict[str, Any], dict[str, Any]]:
    """Ports, default bindings and fixed JSON of a config (dataclass, dict or None)."""
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
    params, values = pyfunc.config_params(config, where)
    ports = [p for p in params if p.role in ("input", "output")]
    fixed = {p.name: values[p.name] for p in params if p.role == "fixed"}
    defaults = {
        p.name: values[p.name]
        for p in ports
        if p.type in ("file", "directory") and values[p.name] is not None
    }
    return ports, defaults, {"config": _json(fixed, where), "config_class": type(config).__name__}


def _json(value: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(value, default=_path_text)))
    except TypeError as exc:
        raise UsageError(f"{where}: the config must be JSON-serializable: {exc}") from None


def _path_text(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def default_instance(cls: type[ContainerModule]) -> ContainerModule:
    """An instance with its config class's defaults, for `spec build SOURCE:CLASS`."""
    try:
        hint = typing.get_type_hints(cls.__init__).get("config")
    except (NameError, TypeError):  # annotations that do not resolve: no config class
        hint = None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return cls()
    try:
        return cls(hint())
    except TypeError as exc:
        raise UsageError(
            f"{cls.__name__}: cannot make a default {hint.__name__} ({exc}); "
            "give every field a default, or name an instance: "
            "SOURCE:INSTANCE"
        ) from None


def load_target(target: str) -> Any:
    """'path/to/file.py:NAME' -> the object NAME defined there (the file is imported)."""
    path_text, sep, name = target.rpartition(":")
    path = Path(path_text)
    if not sep or not name.isidentifier() or path.suffix != ".py":
        raise UsageError(f"'{target}': expected SOURCE.py:NAME, e.g. mymodule.py:count")
    if not path.is_file():
        raise UsageError(f"'{target}': no such file '{path}'")
    stem = path.stem if path.stem.isidentifier() else "containerexec_source"
    mod_name = stem if stem not in sys.modules else f"{stem}_{abs(hash(str(path.resolve())))}"
    loaded = importlib.util.spec_from_file_location(mod_name, path.resolve())
    assert loaded is not None and loaded.loader is not None
    mod = importlib.util.module_from_spec(loaded)
    sys.modules[mod_name] = mod  # dataclasses look their module up while it executes
    sys.path.insert(0, str(path.resolve().parent))  # so its sibling imports work here too
    try:
        loaded.loader.exec_module(mod)
    except ContainerExecError:
        raise
    except Exception as exc:  # the user's code: report it, with where it failed
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise UsageError(
            f"{path}: importing it failed at {Path(frame.filename).name}:"
            f"{frame.lineno}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not hasattr(mod, name):
        names = sorted(
            n
            for n, v in vars(mod).items()
            if isinstance(v, Module | ContainerModule)
            or callable(v)
            and getattr(v, "__module__", None) == mod_name
            and not n.startswith("_")
        )
        raise UsageError(
            f"'{target}': {path.name} defines no '{name}'; candidates: {', '.join(names) or 'none'}"
        )
    return getattr(mod, name)
