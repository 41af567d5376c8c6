"""An Azure ML `command:` (a shell command) -> an argv that runs it with every value quoted.

Azure ML pastes values into the command text and gives it to a shell, so a value
such as `; touch x #` would run. Here the command becomes

    [sh, -c, SCRIPT, NAME, "in_a=${{inputs.a}}", ["in_x=${{inputs.x}}"], "out_o=${{outputs.o}}"]

Each value travels as an argv element of its own (rendered by our one-pass
placeholder grammar, so it is never read again). SCRIPT's first line copies each
`NAME=value` argument into a shell variable; the command then refers to it as
"${in_a}", a quoted expansion, which the shell never splits, globs or runs
whatever the value holds; inside `"$(...)"`, backticks or `${...}` the reference is a
quoted word of that inner command too (the translator follows the nesting), and inside
`$((...))`, where any shell evaluates the text as an expression, the script first checks
that the value is an integer (exit 2 otherwise).

An optional input that is unset gets no argument: its argument is an optional group
in our argv, its variable stays unset, and a `$[[ ... ]]` segment using it is written
`${in_x+...}`, which expands to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

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
    arithmetic: list[str] = field(default_factory=list)  # variables used inside $((...))

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
    # $((...)) evaluates what a value holds as an expression (bash even runs $(...) in an
    # array subscript there): a value used in it must be a plain integer, checked first.
    for n in out.arithmetic:
        kind, _, port = n.partition("_")
        what = f"{'input' if kind == 'in' else 'output'} '{port}'"
        prelude += (
            f"case ${{{n}#-}} in ''|*[!0-9]*) printf '%s\\n' \"{what} is used in "
            f'\\$((...)) and must be an integer, got: ${{{n}}}" >&2; exit 2;; esac\n'
        )
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
        """Rewrite `text`; return it and the maybe-unset inputs it uses.

        A stack of the shell contexts the scan is in (quotes, `$(`, backticks, `$((`,
        `${`) says how each value must be quoted where it stands: a `"` inside `"$(`
        starts a new quoted word, so the quote state alone is not enough.
        """
        parts: list[str] = []
        unset_used: list[str] = []
        stack: list[list[Any]] = [["", 0]]  # [context, open parentheses]
        i = 0
        while i < len(text):
            top = stack[-1]
            m = _PLACEHOLDER.match(text, i)
            if m:
                ref = self._ref(m.group(1), segment, unset_used)
                if top[0] == "$((" and ref not in self.out.arithmetic:
                    self.out.arithmetic.append(ref)
                parts.append(_quoted(ref, top[0]))
                i = m.end()
                continue
            c = text[i]
            if top[0] == "'":
                if c == "'":
                    stack.pop()
                parts.append(c)
                i += 1
                continue
            if len(stack) == 1 and text.startswith("$[[", i):
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
            step = _step(text, i, top, stack)
            parts.append(text[i : i + step])
            i += step
        if len(stack) > 1:
            opened = stack[-1][0]
            self.out.problems.append(
                f"the command leaves a {opened} quote open"
                if opened in ("'", '"')
                else f"the command leaves a '{opened}' open"
            )
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


def _step(text: str, i: int, top: list[Any], stack: list[list[Any]]) -> int:
    """Follow the shell context at `text[i]` (on `stack`); return how many characters
    belong to this step (an escape or an opener is kept whole)."""
    c, kind = text[i], top[0]
    if c == "\\" and i + 1 < len(text):
        return 2
    if text.startswith("$((", i):
        stack.append(["$((", 0])
        return 3
    if text.startswith("$(", i):
        stack.append(["$(", 0])
        return 2
    if text.startswith("${", i):
        stack.append(["${", 0])
        return 2
    if c == "`":
        if kind == "`":
            stack.pop()
        else:
            stack.append(["`", 0])
    elif kind == '"':
        if c == '"':
            stack.pop()
    elif kind in ("$(", "$((") and c in "()":
        if c == "(":
            top[1] += 1
        elif top[1]:
            top[1] -= 1
        elif kind == "$((" and text.startswith("))", i):
            stack.pop()
            return 2
        else:
            stack.pop()
    elif kind == "${" and c == "}":
        stack.pop()
    elif c in "'\"" and kind != "$((":
        stack.append([c, 0])
    return 1


def _quoted(var: str, context: str) -> str:
    """A variable's expansion, quoted for the shell context it stands in."""
    if context in ('"', "$(("):  # already one word (in $((...)) checked to be an integer)
        return f"${{{var}}}"
    if context == "'":
        return f"'\"${{{var}}}\"'"  # close the single quotes, expand in double, reopen
    return f'"${{{var}}}"'  # a word of its own: at the top, in $(...), `...` or ${...}
