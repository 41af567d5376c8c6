"""A YAML pipeline -> Python code that builds the same pipeline with @pipeline and from_yaml.

The code keeps the YAML's module paths and literal values, relative to the YAML's
folder (BASE), so its PipelineSpec equals the YAML's and it runs to the same result
wherever the .py file is written.
"""

from __future__ import annotations

import json
import keyword
import os
from pathlib import Path
from typing import Any

from containerexec.errors import UsageError
from containerexec.model import graph
from containerexec.model.pipeline import PipelineSpec, parse_value
from containerexec.model.pipelinecheck import is_spec_path, load_pipeline

_ANNOTATION = {
    "file": "InputFile",
    "directory": "InputDir",
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
}


def python_name(text: str, taken: set[str]) -> str:
    """A fresh identifier from `text` that is not a keyword and not in `taken`."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in text) or "x"
    name = f"_{name}" if name[0].isdigit() else name
    if keyword.iskeyword(name):
        name += "_"
    stem, n = name, 2
    while name in taken:
        name, n = f"{stem}_{n}", n + 1
    taken.add(name)
    return name


def export_code(path: str | Path, out: str | Path | None = None) -> str:
    """Python source for the pipeline at `path`, to be written at `out` (default: beside it)."""
    path = Path(path).resolve()
    spec = load_pipeline(path)
    target_dir = Path(out).resolve().parent if out else path.parent
    rel = Path(os.path.relpath(path.parent, target_dir)).as_posix()
    taken = {"Path", "BASE", "from_yaml", "pipeline", "Any", *_ANNOTATION.values()}
    params = {n: python_name(n, taken) for n in spec.inputs}
    for n, v in params.items():
        if n != v:
            raise UsageError(
                f"{path}: input '{n}' is not usable as a Python parameter name; "
                "rename it in the YAML"
            )
    modules: dict[str, str] = {}
    for job in spec.jobs.values():
        if job.module not in modules:
            if not is_spec_path(job.module, path.parent):
                raise UsageError(
                    f"{path}: job module '{job.module}' is an image reference; "
                    "export handles spec files only"
                )
            modules[job.module] = python_name(Path(job.module).stem + "_module", taken)
    jobs = {n: python_name(n, taken) for n in spec.jobs}
    fn = python_name(spec.name, taken)
    markers = sorted(
        {_ANNOTATION[p.type] for p in spec.inputs.values() if p.type in ("file", "directory")}
    )
    lines = [
        f'"""Pipeline "{spec.name}", exported from {path.name} by `containerexec pipeline '
        'export`."""',
        "",
        "from __future__ import annotations",
        "",
        "from pathlib import Path",
        "from typing import Any",
        "",
        f"from containerexec.authoring import {', '.join([*markers, 'from_yaml', 'pipeline'])}",
        "",
        "# Module paths and literal paths below are relative to the pipeline's YAML folder.",
        f"BASE = (Path(__file__).resolve().parent / {_lit(rel)}).resolve()",
        "",
    ]
    lines += [f"{var} = from_yaml(BASE / {_lit(ref)})" for ref, var in modules.items()]
    lines += [
        "",
        "",
        _decorator(spec),
        _call(f"def {fn}", _signature(spec), " -> dict[str, Any]:"),
        *_docstring(spec),
    ]
    for name in _order(spec):
        job = spec.jobs[name]
        if job.description:
            lines.append(f"    # {job.description}".replace("\n", "\n    # "))
        args = [_lit(name), *(f"{k}={_arg(v, params, jobs)}" for k, v in job.inputs.items())]
        lines.append(_call(f"    {jobs[name]} = {modules[job.module]}.job", args))
    outs = ", ".join(f"{_lit(k)}: {_arg(v, params, jobs)}" for k, v in spec.outputs.items())
    lines += [
        f"    return {{{outs}}}",
        "",
        "",
        'if __name__ == "__main__":',
        f"    raise SystemExit({fn}.main())",
        "",
    ]
    return "\n".join(lines)


def _decorator(spec: PipelineSpec) -> str:
    parts = [f"name={_lit(spec.name)}"]
    if spec.version != "0.0.0":
        parts.append(f"version={_lit(spec.version)}")
    if not spec.description or "\n" in spec.description:  # else the docstring says it
        parts.append(f"description={_lit(spec.description)}")
    return _call("@pipeline", [*parts, "base=BASE"])


def _signature(spec: PipelineSpec) -> list[str]:
    required, optional = [], []
    for name, port in spec.inputs.items():
        kind = _ANNOTATION[port.type]
        if port.default is not None:
            optional.append(f"{name}: {kind} = {_lit(port.default)}")
        elif port.optional:
            optional.append(f"{name}: {kind} | None = None")
        else:
            required.append(f"{name}: {kind}")
    return required + optional


def _docstring(spec: PipelineSpec) -> list[str]:
    """The description's first line, then the inputs' descriptions as Args."""
    first = _doc_text(spec.description.split("\n", 1)[0] if spec.description else spec.name)
    args = [
        f"        {n}: {_doc_text(p.description)}" for n, p in spec.inputs.items() if p.description
    ]
    if not args:
        return [f'    """{first}"""']
    return [f'    """{first}', "", "    Args:", *args, '    """']


def _doc_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"""')


def _lit(value: Any) -> str:
    """A Python literal; strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _arg(value: Any, params: dict[str, str], jobs: dict[str, str]) -> str:
    source = parse_value(value)
    if source.kind == "input":
        return params[source.name]
    if source.kind == "job":
        out = source.output
        attr = (
            f".{out}"
            if out.isidentifier() and not keyword.iskeyword(out) and not out.startswith("_")
            else f"[{out!r}]"
        )
        return f"{jobs[source.name]}.outputs{attr}"
    return _lit(value)  # literals and templates ('run-${{inputs.tag}}') stay as written


def _call(head: str, args: list[str], tail: str = "") -> str:
    """`head(args)` on one line, or one argument per line when that is too long."""
    line = f"{head}({', '.join(args)}){tail}"
    if len(line) <= 100:
        return line
    indent = " " * (len(head) - len(head.lstrip()))
    return f"{head}(\n" + "".join(f"{indent}    {a},\n" for a in args) + f"{indent}){tail}"


def _order(spec: PipelineSpec) -> list[str]:
    """Jobs in the YAML's order, except that each comes after the jobs it needs."""
    needs: dict[str, set[str]] = {n: set() for n in spec.jobs}
    for up, _out, down, _in in graph.edges(spec):
        needs[down].add(up)
    done: list[str] = []
    while len(done) < len(needs):
        done.append(next(n for n in spec.jobs if n not in done and needs[n] <= set(done)))
    return done
