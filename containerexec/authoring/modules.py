"""Modules from Python: the Module object, @module on a typed function, ContainerModule.

    @module(image="containerexec/base:bookworm", resources={"memory": "256m"})
    def count(corpus: InputDir, counts: OutputDir, min_count: int = 1) -> None:
        ...                                   # runs inside the container

    count.spec        # the ModuleSpec;  count.to_yaml()  its YAML
    count.run(corpus="data", counts="out")   # in a local container, recorded like any run
    count(corpus=Path("data"), counts=Path("out"))   # a plain call, here (for unit tests)

The module's source file is shipped whole inside the spec (see functions.py), so it
must import only what the image has; `containerexec` itself is stood in for there.
ContainerModule lives beside Module because each makes the other: `as_module()`
returns a Module and `Module.from_func` accepts a ContainerModule.
"""

from __future__ import annotations

import contextlib
import copy as pycopy
import dataclasses
import functools
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from containerexec.authoring import functions as pyfunc
from containerexec.authoring import tracing
from containerexec.authoring.engine import connected
from containerexec.authoring.functions import Source
from containerexec.authoring.requirements import Requirements
from containerexec.authoring.specfile import SpecFile
from containerexec.display.runs import Progress, RunDisplay, summary
from containerexec.engine.base import Engine
from containerexec.errors import UsageError
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions, secrets_from
from containerexec.run.results import RunResult
from containerexec.store.tree import RunStore

RESERVED = ("runs_dir", "engine", "options", "check", "progress")


class Module:
    """A module spec plus how to run it here; made from YAML, a function or a ContainerModule."""

    def __init__(
        self,
        spec: ModuleSpec,
        *,
        spec_path: Path | None,
        spec_file: SpecFile,
        defaults: Mapping[str, Any] | None = None,
        func: Callable[..., Any] | None = None,
        for_run: Callable[[Mapping[str, Any]], Module] | None = None,
    ) -> None:
        """`spec_path` is the YAML or Python file relative paths (build context) start from;
        `for_run` remakes the module with a run's values (a ContainerModule's array())."""
        self.spec = spec
        self.spec_path = spec_path
        self.spec_file = spec_file
        self.defaults = dict(defaults or {})
        self.func = func
        self.for_run = for_run
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
        return cls(load_spec(path), spec_path=path, spec_file=SpecFile(text=path.read_text()))

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
        return self.spec_file.render(self.spec, self.spec_dir, to_dir)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(path))
        return path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside a @pipeline function: add a job. Elsewhere: call the function here."""
        if tracing.building():
            if args:
                raise UsageError(f"module '{self.name}': pass inputs by name in a pipeline")
            return tracing.add_job(self, None, kwargs)
        if self.func is None:
            raise UsageError(
                f"module '{self.name}' is a spec, not a function: use .run(...) "
                "to run it, or call it inside a @pipeline function"
            )
        return self.func(*args, **kwargs)

    def job(self, name: str, **inputs: Any) -> Any:
        """Inside a @pipeline function: add a job with this name."""
        return tracing.add_job(self, name, inputs)

    def run(
        self,
        *,
        runs_dir: str | Path = ".containerexec",
        engine: Engine | str | None = None,
        options: RunOptions | None = None,
        check: bool = True,
        progress: Progress = False,
        **values: Any,
    ) -> RunResult:
        """Run in local containers through the normal Executor; inputs and outputs by name.

        Outputs not given go inside the run's folder. A ContainerModule's array() is
        evaluated here, now, with these values in its config. The result's `values`
        are what each shard returned, in shard order, container paths made host paths.
        Raises ShardFailed (its fields: module, shard, image, argv, exit code, failure
        kind, log tail, log path) when a shard failed, unless `check=False`.
        `progress=True` shows what `containerexec run` shows on stderr (the command's
        output or a live progress line, then the summary); a callable instead gets
        each ShardEvent (kind, index, count, state, attempt, run_id) as it happens.
        """
        values = {**self.defaults, **values}
        spec = self.for_run(values).spec if self.for_run is not None else self.spec
        outputs = {k: str(v) for k, v in values.items() if k in self.spec.outputs}
        inputs = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in values.items()
            if k not in self.spec.outputs
        }
        secrets = secrets_from(self.spec.secrets, os.environ)
        shown = RunDisplay(stream_output=spec.array is None, total=1) if progress is True else None
        with connected(engine) as eng, shown or contextlib.nullcontext():
            executor = Executor(
                eng,
                RunStore(Path(runs_dir)),
                secrets=secrets,
                on_event=shown.event if shown else progress if callable(progress) else None,
                on_line=shown.line if shown and shown.stream_output else None,
            )
            run = executor.start(spec, inputs, outputs, spec_path=self.spec_path, options=options)
            result = run.wait()
        if shown:
            summary(result)
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
    packages: list[str] | None = None,
) -> Any:
    """Turn a typed function into a Module whose body runs inside the container.

    Parameters annotated InputFile/InputDir/OutputFile/OutputDir become ports;
    str/int/float/bool become inputs (defaults become spec defaults); ShardIndex
    and ShardValue receive the shard of an `array`, and ShardFile the path of a glob
    shard's own file (the glob's folder is then mounted and cached file by file).
    `build` is relative to the source file. `packages` (pip requirements, locked in
    `<name>.lock` beside the source file) are installed on the image, or alone on the
    base image.
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
            "environment": pyfunc.environment(image, build, where, packages),
            "resources": resources,
            "array": array,
            "retries": retries,
            "env": env,
            "secrets": secrets,
            "network": network,
            "docs": pyfunc.param_docs(func.__doc__),
        }
        spec, spec_file = pyfunc.build_spec(
            source=source, kind="function", params=params, settings=settings
        )
        return Module(spec, spec_path=source.path, spec_file=spec_file, func=func)

    return wrap(fn) if fn is not None else wrap


class ContainerModule:
    """A stopes-style module: `run(iteration_value, iteration_index)` runs in a container.

    Each value of `array()` (computed when a run starts, see as_module) is one shard,
    in its own container and process: nothing `run` sets on `self` is shared.
    The config (a dataclass, a dict or None) travels as JSON; dataclass fields
    annotated InputFile/InputDir/OutputFile/OutputDir are mounted, and `run`
    sees them as container paths. Set `image` (or `build`) on the class, and/or
    `packages` (pip requirements, installed on it or alone on the base image).
    """

    image: ClassVar[str | None] = None
    build: ClassVar[str | None] = None
    packages: ClassVar[list[str] | None] = None
    version: ClassVar[str] = "0.0.0"
    # {"input": FIELD, "pattern": "*.txt"}: one shard per matching file of that InputDir
    # field instead of array(); run() gets the file as iteration_value, and each shard
    # mounts and is cached on its file alone.
    glob: ClassVar[Mapping[str, str] | None] = None

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
        """This instance, with its config, as a Module (spec, to_yaml, run).

        A class that defines array() is never frozen to the values it gives now: its
        spec says `array.python: array`, which a run of the spec file lists in the
        module's image when it starts (run/pymodule.py), and Module.run lists here when
        each run starts, on a copy whose config holds that run's inputs.
        """
        return self._as_module(listed_now=False)

    def _as_module(self, *, listed_now: bool) -> Module:
        cls = type(self)
        source = Source.of(cls)
        where = f"{source.path.name}:{source.object}"
        params, defaults, extra = pyfunc.config_ports(self.config, source, where)
        req = Requirements.of(self.requirements(), where)
        later = cls.array is not ContainerModule.array and not listed_now
        values = self.array() if not later else None
        array: dict[str, Any] | None = None
        if later:
            extra["array_json"] = True  # run/pymodule.py gives each value as JSON
            array = {"python": "array"}
            if req.max_parallel:
                array["max_parallel"] = req.max_parallel
        elif values is not None:
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
        if cls.glob is not None:
            array = _glob_array(cls, params, req, where, extra)
        settings = {
            "name": pyfunc.module_name(self.name()),
            "version": cls.version,
            "description": self.comment() or "",
            "environment": pyfunc.environment(cls.image, cls.build, where, cls.packages),
            "resources": resources or None,
            "array": array,
        }
        spec, spec_file = pyfunc.build_spec(
            source=source, kind="class", params=params, settings=settings, extra_entry=extra
        )
        return Module(
            spec,
            spec_path=source.path,
            spec_file=spec_file,
            defaults=defaults,
            for_run=lambda values: self.with_values(values)._as_module(listed_now=True),
        )

    def with_values(self, values: Mapping[str, Any]) -> ContainerModule:
        """A copy whose config holds a run's values for its port fields (as stopes' config
        holds the inputs), so array() sees what the run will mount."""
        copy = pycopy.copy(self)
        if dataclasses.is_dataclass(self.config) and not isinstance(self.config, type):
            where = f"{type(self).__name__}.config"
            params, _ = pyfunc.config_params(self.config, where)
            update = {
                p.name: Path(values[p.name])
                if p.type in ("file", "directory") and isinstance(values[p.name], str)
                else values[p.name]
                for p in params
                if p.role in ("input", "output") and p.name in values
            }
            copy.config = dataclasses.replace(self.config, **update)
        return copy


def _glob_array(
    cls: type[ContainerModule],
    params: list[pyfunc.Param],
    req: Requirements,
    where: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The glob array of a class that sets `glob` (and notes in the entry whether a config
    field is the globbed folder); UsageError when it also defines array()."""
    if cls.array is not ContainerModule.array:
        raise UsageError(f"{where}: set glob or define array(), not both")
    if not isinstance(cls.glob, Mapping):
        raise UsageError(f"{where}: glob must be a dict: {{'input': FIELD, 'pattern': '*.txt'}}")
    array: dict[str, Any] = {"glob": dict(cls.glob)}
    if req.max_parallel:
        array["max_parallel"] = req.max_parallel
    extra["glob_field"] = any(p.name == cls.glob.get("input") for p in params)
    return array


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
