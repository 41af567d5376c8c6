"""An Azure ML v2 command component (YAML) -> our ModuleSpec, with what a local run ignores.

    $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
    name: train            inputs: {data: {type: uri_folder}, lr: {type: number, optional: true}}
    code: ./src            outputs: {model: {type: uri_folder}}
    environment: azureml:sklearn-env:3        (resolved through the image map)
    command: python train.py --data ${{inputs.data}} $[[--lr ${{inputs.lr}}]]

`code:` becomes a directory input mounted read-only and used as the working
directory; the command runs under a shell with every value quoted (amlcommand.py).
Fields a local run cannot honour are returned by name, for the CLI to report once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerexec.errors import Problem, SpecError, UsageError
from containerexec.formats import amlcommand
from containerexec.model import yamlsource
from containerexec.model.spec import ModuleSpec, validate_spec

Loc = yamlsource.Loc
TYPES = {
    "uri_folder": "directory",
    "uri_file": "file",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}
# Azure ML asset types that arrive as a folder: run as a directory input, and said so.
FOLDER_LIKE = ("mltable", "mlflow_model", "custom_model", "triton_model", "path")
OUTPUT_TYPES = {"uri_folder": "directory", "uri_file": "file"}
CODE_INPUT = "aml_code"
NETWORK_TAG = "containerexec.network"  # tags: {containerexec.network: "true"} gives network
# Fields read below; any other one, at any level, is reported as ignored.
_COMPONENT_KEYS = {
    "$schema", "type", "name", "version", "display_name", "description", "tags",
    "is_deterministic", "inputs", "outputs", "command", "code", "environment",
    "environment_variables", "resources",
}  # fmt: skip
_INPUT_KEYS = {"type", "optional", "default", "description"}
_OUTPUT_KEYS = {"type", "description"}
_ENV_KEYS = {"image", "conda_file", "build"}
REGISTERED = re.compile(
    r"azureml:(?://registries/[^/]+/environments/(?P<rname>[^/]+)"
    r"/(?:versions/(?P<rversion>[^/]+)|labels/(?P<rlabel>[^/]+))"
    r"|(?P<name>[^:@/]+)(?::(?P<version>[^:@]+)|@(?P<label>.+))?)"
)


@dataclass
class Converted:
    """A converted module, the fields that were ignored, and notes the user should see."""

    spec: ModuleSpec
    data: dict[str, Any]  # the spec as plain data, for `spec convert`
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_image_map(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--image-map NAME=IMAGE` values, or FILE values (a YAML mapping NAME: IMAGE)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if sep and name and not Path(value).is_file():
            out[name] = ref
            continue
        try:
            src = yamlsource.parse(Path(value).read_text(), value)
        except OSError as exc:
            src = yamlsource.Located(value, None, problems=[Problem(value, 0, 0, "", str(exc))])
        if src.problems:
            raise UsageError(
                f"--image-map '{value}': expected NAME=IMAGE or a YAML file of NAME: IMAGE "
                f"lines ({src.problems[0]})"
            )
        data = src.data
        if not isinstance(data, dict):
            raise UsageError(f"--image-map '{value}': the file must map NAME: IMAGE")
        out |= {str(k): str(v) for k, v in data.items()}
    return out


def load_component_map(values: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """`--component-map NAME=FILE` values (relative to here), or FILE values: a YAML mapping
    NAME: FILE, its files relative to the map file's folder."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if sep and name and not Path(value).is_file():
            out[name] = Path(file).resolve()
            continue
        try:
            src = yamlsource.parse(Path(value).read_text(), value)
        except OSError as exc:
            src = yamlsource.Located(value, None, problems=[Problem(value, 0, 0, "", str(exc))])
        if src.problems or not isinstance(src.data, dict):
            why = f" ({src.problems[0]})" if src.problems else ""
            raise UsageError(
                f"--component-map '{value}': expected NAME=FILE or a YAML file of NAME: FILE "
                f"lines{why}"
            )
        base = Path(value).resolve().parent
        out |= {str(k): (base / str(v)).resolve() for k, v in src.data.items()}
    return out


def mapped_component(component_map: Mapping[str, Path], comp: str) -> Path:
    """The file `--component-map` gives registered component `comp` (azureml:NAME:VERSION,
    azureml:NAME@LABEL); ValueError says what is wrong and how to map it."""
    m = REGISTERED.fullmatch(comp)
    name = (m.group("name") or m.group("rname")) if m else None
    if m is None or name is None:
        raise ValueError(f"expected azureml:NAME:VERSION or azureml:NAME@LABEL, got '{comp}'")
    version = m.group("version") or m.group("rversion")
    label = m.group("label") or m.group("rlabel") or "latest"
    keys = [f"{name}:{version}" if version else f"{name}@{label}", name]
    file = next((component_map[k] for k in keys if k in component_map), None)
    if file is None:
        raise ValueError(
            f"component '{comp}' is registered in Azure ML and has no local file; map it "
            f"to its YAML: --component-map {name}=FILE (or --component-map FILE.yaml, a "
            f"YAML file with the line '{name}: FILE'); '{keys[0]}' maps this version only"
        )
    return file


def read_mapping(path: Path, error: type[SpecError] = SpecError) -> yamlsource.Located:
    """A YAML file that must hold a mapping, with positions; `error` lists what is wrong."""
    try:
        src = yamlsource.parse(path.read_text(), str(path))
    except OSError as exc:
        raise error(str(path), [Problem(str(path), 0, 0, "", exc.strerror or str(exc))]) from None
    if src.problems or not isinstance(src.data, dict):
        raise error(str(path), src.problems or [src.problem((), "expected a mapping")])
    return src


def load_component(path: Path, image_map: Mapping[str, str]) -> Converted:
    """Read and convert a command component file; SpecError lists every problem."""
    src = read_mapping(path)
    return convert_component(src, (), path.parent, image_map, default_name=path.stem)


def convert_component(
    src: yamlsource.Located,
    prefix: Loc,
    base: Path,
    image_map: Mapping[str, str],
    *,
    default_name: str,
) -> Converted:
    """Convert the component at `prefix` in `src` (a file, or inline in a pipeline).

    Paths in it (code, conda_file, build) are relative to `base`.
    """
    conv = _Component(src, prefix, base, image_map)
    data = conv.run(default_name)
    if conv.problems:
        raise SpecError(src.path, sorted(conv.problems, key=lambda p: (p.line, p.col)))
    spec = validate_spec(data, src.path)
    return Converted(spec, data, conv.ignored, conv.notes)


class _Component:
    def __init__(
        self, src: yamlsource.Located, prefix: Loc, base: Path, image_map: Mapping[str, str]
    ) -> None:
        self.src, self.prefix, self.base, self.image_map = src, prefix, base, image_map
        node: Any = src.data
        for part in prefix:
            node = node[part]
        self.data: dict[str, Any] = node
        self.problems: list[Problem] = []
        self.ignored: list[str] = []
        self.notes: list[str] = []

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> None:
        self.problems.append(self.src.problem((*self.prefix, *loc), message, key=key))

    def ignore(self, mapping: Mapping[str, Any], known: set[str], loc: Loc) -> None:
        self.ignored += [yamlsource.dotted((*loc, k)) for k in mapping if k not in known]

    def run(self, default_name: str) -> dict[str, Any]:
        d = self.data
        self.ignore(d, _COMPONENT_KEYS, ())
        if d.get("type", "command") != "command":
            self.problem(("type",), f"only command components run here, got '{d['type']}'")
        raw_name = str(d.get("name") or default_name)
        name = re.sub(r"[^a-z0-9_.-]", "-", raw_name.lower()).lstrip("-_.") or "component"
        if name != raw_name:
            self.notes.append(f"name '{raw_name}' is '{name}' here")
        out: dict[str, Any] = {
            "name": name[:64],
            "version": str(d.get("version", "0.0.0")),
        }
        description = d.get("description") or d.get("display_name")
        if description:
            out["description"] = str(description)
        if d.get("description") and d.get("display_name"):
            self.ignored.append("display_name")
        inputs, maybe_unset = self.inputs(d.get("inputs") or {})
        outputs = self.outputs(d.get("outputs") or {})
        out |= {"environment": self.environment(d.get("environment")), "inputs": inputs}
        out["outputs"] = outputs
        command = d.get("command")
        if not isinstance(command, str) or not command.strip():
            self.problem(("command",), "expected the command to run (a string)", key=True)
            command = "true"
        shell = amlcommand.translate(command, list(inputs), list(outputs), maybe_unset)
        for message in shell.problems:
            self.problem(("command",), message)
        out["command"] = shell.argv(name, maybe_unset)
        if "code" in d:
            self.code(d["code"], out)
        env = d.get("environment_variables") or {}
        if isinstance(env, dict) and env:
            out["env"] = {str(k): str(v) for k, v in env.items()}
        tags = d.get("tags") or {}
        if isinstance(tags, dict):
            self.ignore(tags, {NETWORK_TAG}, ("tags",))
            out["network"] = str(tags.get(NETWORK_TAG, "")).lower() == "true"
        if d.get("is_deterministic") is False:
            out["cache"] = False
        resources = d.get("resources")
        if isinstance(resources, dict):
            self.ignore(resources, {"shm_size"}, ("resources",))
            if "shm_size" in resources:
                out["resources"] = {"shm_size": resources["shm_size"]}
        elif resources is not None:
            self.ignored.append("resources")
        return out

    def inputs(self, raw: Any) -> tuple[dict[str, Any], list[str]]:
        out: dict[str, Any] = {}
        maybe_unset: list[str] = []
        if not isinstance(raw, dict):
            self.problem(("inputs",), "expected a mapping of input names")
            return out, maybe_unset
        for name, port in raw.items():
            loc: Loc = ("inputs", name)
            if not isinstance(port, dict):
                self.problem(loc, "expected a mapping with 'type'")
                continue
            self.ignore(port, _INPUT_KEYS, loc)
            kind = self.port_type(port.get("type"), (*loc, "type"), TYPES)
            entry: dict[str, Any] = {"type": kind}
            if port.get("optional"):
                entry["optional"] = True
            if port.get("description"):
                entry["description"] = str(port["description"])
            default = port.get("default")
            if default is not None:
                if kind in ("file", "directory"):
                    default = str((self.base / str(default)).resolve())
                entry["default"] = default
            elif entry.get("optional"):
                maybe_unset.append(name)
            out[name] = entry
        return out, maybe_unset

    def outputs(self, raw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not isinstance(raw, dict):
            self.problem(("outputs",), "expected a mapping of output names")
            return out
        for name, port in raw.items():
            loc: Loc = ("outputs", name)
            port = port if isinstance(port, dict) else {}
            self.ignore(port, _OUTPUT_KEYS, loc)
            kind = self.port_type(port.get("type", "uri_folder"), (*loc, "type"), OUTPUT_TYPES)
            out[name] = {"type": kind}
            if port.get("description"):
                out[name]["description"] = str(port["description"])
        return out

    def port_type(self, written: Any, loc: Loc, table: Mapping[str, str]) -> str:
        if written in table:
            return table[written]
        if table is TYPES and written in FOLDER_LIKE:
            self.notes.append(f"{yamlsource.dotted(loc)} '{written}' runs as a folder (uri_folder)")
            return "directory"
        self.problem(loc, f"expected one of {', '.join(table)}, got '{written}'")
        return "directory" if table is OUTPUT_TYPES else "string"

    def environment(self, env: Any) -> dict[str, Any]:
        loc: Loc = ("environment",)
        if isinstance(env, str):
            return {"image": self.registered(env, loc)}
        if not isinstance(env, dict):
            self.problem(loc, "expected an environment: azureml:NAME:VERSION or {image: ...}")
            return {"image": "missing"}
        self.ignore(env, _ENV_KEYS, loc)
        packages = (
            self.conda(env["conda_file"], (*loc, "conda_file")) if "conda_file" in env else []
        )
        python = {"python": {"packages": packages}} if packages else {}
        build = env.get("build")
        if isinstance(build, dict) and "path" in build:
            self.ignore(build, {"path", "dockerfile_path"}, (*loc, "build"))
            context = (self.base / str(build["path"])).resolve()
            if not context.is_dir():
                self.problem((*loc, "build", "path"), f"no build folder at '{context}'")
            return {
                "build": {
                    "context": str(context),
                    "dockerfile": str(build.get("dockerfile_path", "Dockerfile")),
                },
                **python,
            }
        image = env.get("image")
        if not isinstance(image, str) or not image:
            self.problem(loc, "expected 'image' (or 'build: {path: ...}') in the environment")
            return {"image": "missing"}
        return {"image": self.image_map.get(image, image), **python}

    def registered(self, ref: str, loc: Loc) -> str:
        """A registered environment (or any reference) looked up in the image map."""
        m = REGISTERED.fullmatch(ref)
        if m is None:
            return self.image_map.get(ref, ref)  # a plain image reference
        name = m.group("name") or m.group("rname")
        version = m.group("version") or m.group("rversion")
        label = m.group("label") or m.group("rlabel")
        keys = [ref, f"{name}:{version}" if version else f"{name}@{label or 'latest'}", name]
        for key in keys:
            if key in self.image_map:
                return self.image_map[key]
        self.problem(
            loc,
            f"environment '{ref}' is registered in Azure ML and has no local image; map it "
            f"to one: --image-map {name}=IMAGE (or --image-map FILE, a YAML file with the "
            f"line '{name}: IMAGE'); '{keys[1]}' maps this version only",
        )
        return "unmapped"

    def conda(self, conda: Any, loc: Loc) -> list[str]:
        """Its pip dependencies, which become declared Python packages; conda's own
        packages cannot be installed here, so they are named once in a note."""
        if isinstance(conda, str):
            path = self.base / conda
            try:
                src = yamlsource.parse(path.read_text(), str(path))
            except OSError as exc:
                self.problem(loc, f"cannot read the conda file '{path}': {exc}")
                return []
            if src.problems:
                self.problem(loc, f"cannot read the conda file '{path}': {src.problems[0]}")
                return []
            conda = src.data
        deps = conda.get("dependencies", []) if isinstance(conda, dict) else []
        pip = [str(p) for d in deps if isinstance(d, dict) for p in (d.get("pip") or [])]
        conda_only = [str(d) for d in deps if isinstance(d, str)]
        # `pip` itself and `python=X` are what every image with Python has already.
        skipped = [d for d in conda_only if re.split(r"[=<>! ]", d)[0] not in ("pip", "python")]
        if skipped:
            self.notes.append(
                f"{yamlsource.dotted(loc)}: conda packages are not installed here "
                f"({', '.join(skipped)}); only its pip dependencies are "
                "(environment.python.packages), into the environment's image"
            )
        return pip

    def code(self, code: Any, out: dict[str, Any]) -> None:
        if isinstance(code, dict):
            code = code.get("local_path") or code.get("path")
        if not isinstance(code, str) or code.startswith(("azureml:", "http:", "https:")):
            self.problem(("code",), f"expected a local folder, got '{code}'")
            return
        folder = (self.base / code).resolve()
        if not folder.is_dir():
            self.problem(("code",), f"no code folder at '{folder}'")
            return
        name = CODE_INPUT
        while name in out["inputs"]:
            name += "_"
        out["inputs"][name] = {
            "type": "directory",
            "default": str(folder),
            "description": "Azure ML code: mounted read-only as the working directory",
        }
        out["workdir"] = f"/inputs/{name}"
