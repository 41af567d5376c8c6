"""An Azure ML `command:` (a shell command) -> an argv that runs it with every value quoted.

Azure ML pastes values into the command text and gives it to a shell, so a value
such as `; touch x #` would run. Here the command becomes

    [sh, -c, SCRIPT, NAME, "in_a=${{inputs.a}}", ["in_x=${{inputs.x}}"], "out_o=${{outputs.o}}"]

Each value travels as an argv element of its own (rendered by our one-pass
placeholder grammar, so it is never read again). SCRIPT's first line copies each
`NAME=value` argument into a shell variable; the command then refers to it as
"${in_a}", a quoted expansion, which the shell never splits, globs or runs
whatever the value holds. An optional input that is unset gets no argument: its
argument is an optional group in our argv, its variable stays unset, and a
`$[[ ... ]]` segment using it is written `${in_x+...}`, which expands to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_REF = re.compile(r"(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)")
# Shell syntax that `${var+word}` would take literally: a segment holding it cannot be
# made conditional this way, so it is refused rather than run differently.
_SEGMENT_UNSAFE = set(";|&<>(){}`\n")
SHELL = "sh"


@dataclass
class ShellCommand:
    """The translated command: the script, and the references it takes as arguments."""

    script: str
    inputs: list[str] = field(default_factory=list)  # in order of first use
    outputs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def argv(self, name: str, optional: Collection[str]) -> list[str | list[str]]:
        """Our spec's command: optional inputs' arguments are optional groups."""
        args: list[str | list[str]] = [SHELL, "-c", self.script, name]
        for port in self.inputs:
            arg = f"{variable('inputs', port)}=${{{{inputs.{port}}}}}"
            args.append([arg] if port in optional else arg)
        args += [f"{variable('outputs', port)}=${{{{outputs.{port}}}}}" for port in self.outputs]
        return args


def variable(kind: str, port: str) -> str:
    """The shell variable that holds a port's value: in_NAME or out_NAME."""
    return f"{'in' if kind == 'inputs' else 'out'}_{port}"


def translate(
    command: str, inputs: Collection[str], outputs: Collection[str], maybe_unset: Collection[str]
) -> ShellCommand:
    """Translate an Azure ML command.

    Args:
        inputs, outputs: the declared port names.
        maybe_unset: the optional inputs with no default (the only ones that can be unset);
            each must appear only inside a `$[[ ... ]]` segment, as Azure ML requires.
    """
    out = ShellCommand("")
    body = _Translator(out, set(inputs), set(outputs), set(maybe_unset)).run(command)
    names = [variable("inputs", p) for p in out.inputs] + [
        variable("outputs", p) for p in out.outputs
    ]
    if names:
        cases = "".join(f"  {n}=*) {n}=${{arg#*=}} ;;\n" for n in names)
        prelude = f"unset {' '.join(names)}\nfor arg do case $arg in\n{cases}esac; done\n"
    else:
        prelude = ""
    out.script = prelude + body
    return out


class _Translator:
    def __init__(
        self, out: ShellCommand, inputs: set[str], outputs: set[str], maybe_unset: set[str]
    ) -> None:
        self.out = out
        self.declared = {"inputs": inputs, "outputs": outputs}
        self.maybe_unset = maybe_unset

    def run(self, text: str) -> str:
        result, _ = self._scan(text, segment=False)
        return result

    def _scan(self, text: str, *, segment: bool) -> tuple[str, list[str]]:
        """Rewrite `text`; return it and the maybe-unset inputs it uses."""
        parts: list[str] = []
        unset_used: list[str] = []
        quote = ""  # "", "'" or '"'
        i = 0
        while i < len(text):
            m = _PLACEHOLDER.match(text, i)
            if m:
                ref = self._ref(m.group(1), segment, unset_used)
                parts.append(_quoted(ref, quote))
                i = m.end()
                continue
            c = text[i]
            if not quote and text.startswith("$[[", i):
                end = text.find("]]", i + 3)
                if end < 0 or segment:
                    self.out.problems.append(
                        "a '$[[' segment is not closed by ']]'"
                        if end < 0
                        else "a '$[[ ... ]]' segment inside another is not supported"
                    )
                    return "".join(parts), unset_used
                parts.append(self._segment(text[i + 3 : end]))
                i = end + 2
                continue
            if c == "\\" and quote != "'" and i + 1 < len(text):
                parts.append(text[i : i + 2])
                i += 2
                continue
            if c in "'\"" and (not quote or quote == c):
                quote = "" if quote else c
            parts.append(c)
            i += 1
        if quote:
            self.out.problems.append(f"the command leaves a {quote} quote open")
        return "".join(parts), unset_used

    def _segment(self, inner: str) -> str:
        body, unset_used = self._scan(inner, segment=True)
        if not unset_used:
            return body  # every input in it always has a value: the segment always stays
        literal = _PLACEHOLDER.sub("", inner)
        bad = sorted(set(literal) & _SEGMENT_UNSAFE)
        if bad:
            shown = " ".join(repr(c) for c in bad)
            self.out.problems.append(
                f"the '$[[{inner}]]' segment holds shell syntax ({shown}) that cannot be made "
                "optional; keep only words and ${{inputs.NAME}} in $[[ ... ]]"
            )
            return body
        for port in reversed(unset_used):
            body = f"${{{variable('inputs', port)}+{body}}}"
        return body

    def _ref(self, written: str, segment: bool, unset_used: list[str]) -> str:
        m = _REF.fullmatch(written)
        if m is None:
            self.out.problems.append(
                f"'${{{{{written}}}}}' is not supported here; expected "
                "${{inputs.NAME}} or ${{outputs.NAME}}"
            )
            return "UNSUPPORTED"
        kind, port = m.group(1), m.group(2)
        if port not in self.declared[kind]:
            known = ", ".join(sorted(self.declared[kind])) or "none declared"
            self.out.problems.append(
                f"'${{{{{written}}}}}' names no declared {kind[:-1]} ({known})"
            )
        elif kind == "inputs" and port in self.maybe_unset:
            if not segment:
                self.out.problems.append(
                    f"optional input '{port}' is used outside a $[[ ... ]] segment; "
                    f"write $[[--{port} ${{{{inputs.{port}}}}}]] so it is dropped when unset"
                )
            if port not in unset_used:
                unset_used.append(port)
        seen = self.out.inputs if kind == "inputs" else self.out.outputs
        if port not in seen:
            seen.append(port)
        return variable(kind, port)


def _quoted(var: str, quote: str) -> str:
    """A variable's expansion, quoted for where it stands in the command."""
    if quote == '"':
        return f"${{{var}}}"
    if quote == "'":
        return f"'\"${{{var}}}\"'"  # close the single quotes, expand in double, reopen
    return f'"${{{var}}}"'
