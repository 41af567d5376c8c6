"""What `write()` puts in a spec file: YAML made only here, on the way out.

A module written in Python keeps the plain data its spec was validated from
(sizes stay '64m', not bytes) under a header saying where it came from, and a
`source` stamp (its file, relative to the YAML, and that file's sha256) by which
`validate` and `run` refuse the YAML once the file changed; a module read from a
file keeps that file's text, comments and all.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from containerexec.model.spec import ModuleSpec


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so embedded code stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any, *, header: str = "") -> str:
    """Plain data -> YAML in the order given, under an optional `# header` line."""
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return f"# {header}\n{text}" if header else text


@dataclass(frozen=True)
class SpecFile:
    """A module spec as written out: generated data with a header, or a file's own text."""

    data: Mapping[str, Any] | None = None
    header: str = ""
    text: str | None = None

    def named(self, name: str) -> SpecFile:
        """This file with `name` as what to give `spec build` again: the NAME it was given."""
        if self.data is None or "source" not in self.data:
            return self
        was = f":{self.data['source']['object']}"
        header = self.header[: -len(was)] + f":{name}" if self.header.endswith(was) else self.header
        data = {**self.data, "source": {**self.data["source"], "object": name}}
        return dataclasses.replace(self, data=data, header=header)

    def render(self, spec: ModuleSpec, from_dir: Path, to_dir: Path) -> str:
        """The YAML for a file in `to_dir`; a build context is relative to `from_dir` now."""
        build = spec.environment.build
        relative = build is not None or spec.source is not None
        moved = relative and from_dir.resolve() != to_dir.resolve()
        if self.text is not None and not moved:
            return self.text
        if self.text is not None:
            first = self.text.split("\n", 1)[0]
            header = first.lstrip("# ") if first.startswith("#") else ""
            data = yaml.safe_load(self.text)
        else:
            header, data = self.header, copy.deepcopy(dict(self.data or {}))
        if build is not None and moved:
            context = os.path.relpath((from_dir / build.context).resolve(), to_dir.resolve())
            data["environment"]["build"]["context"] = Path(context).as_posix()
        if spec.source is not None and "source" in data:
            source = os.path.relpath(
                (from_dir / data["source"]["file"]).resolve(), to_dir.resolve()
            )
            data["source"] = {**data["source"], "file": Path(source).as_posix()}
        return dump_yaml(data, header=header)


def source_stamp(path: Path, name: str) -> dict[str, str]:
    """The `source` of a spec made from the Python file at `path`: relative to the spec's
    folder, which for a module made in Python is that file's own (Module.spec_dir)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"file": path.name, "object": name, "sha256": digest}
