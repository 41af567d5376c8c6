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
in our argv and its variable stays unset. A `$[[ ... ]]` segment may hold any command
text (`> file`, `&& cmd`, `| tr`), as in Azure ML: when a segment uses such an input,
the command is assembled at run time from its fixed pieces, each single-quoted, and a
segment's piece is added only when every such input it uses is set; `eval` then runs
the assembled text once. The pieces are the spec's own text with quoted references,
so a value is still expanded once, as one quoted word, and never read as code.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

_PLACEHOLDER = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_REF = re.compile(r"(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)")
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
        # An optional input left unset is not checked: its segment is dropped.
        guard = f'[ -z "${{{n}+set}}" ] || ' if port in maybe_unset else ""
        prelude += (
            f"{guard}case ${{{n}#-}} in ''|*[!0-9]*) printf '%s\\n' \"{what} is used in "
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
        pieces, _ = self._scan(text, segment=False)
        if not any(needs for _, needs in pieces):
            return "".join(piece for piece, _ in pieces)
        # A segment that may drop holds any shell text: assemble the command, then run it.
        lines = ["cmd=''"]
        for piece, needs in pieces:
            add = f"cmd=$cmd{_single_quoted(piece)}"
            if needs:
                test = " && ".join(f'[ "${{{n}+set}}" ]' for n in needs)
                add = f"if {test}; then {add}; fi"
            lines.append(add)
        return "\n".join([*lines, 'eval "$cmd"'])

    def _scan(self, text: str, *, segment: bool) -> tuple[list[tuple[str, list[str]]], list[str]]:
        """Rewrite `text` into pieces, each with the variables that must be set for it to
        stay (a `$[[ ... ]]` segment's); return them and the maybe-unset inputs it uses.

        A stack of the shell contexts the scan is in (quotes, `$(`, backticks, `$((`,
        `${`) says how each value must be quoted where it stands: a `"` inside `"$(`
        starts a new quoted word, so the quote state alone is not enough.
        """
        parts: list[str] = []
        pieces: list[tuple[str, list[str]]] = []
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
                    return [("".join(parts), [])], unset_used
                segment_text, needs = self._segment(text[i + 3 : end])
                if needs:
                    pieces += [("".join(parts), []), (segment_text, needs)]
                    parts = []
                else:
                    parts.append(segment_text)
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
        pieces.append(("".join(parts), []))
        return [p for p in pieces if p[0] or p[1]], unset_used

    def _segment(self, inner: str) -> tuple[str, list[str]]:
        """The segment's text and the variables it needs set (none: it always stays)."""
        pieces, unset_used = self._scan(inner, segment=True)
        body = "".join(piece for piece, _ in pieces)
        return body, [variable("inputs", port) for port in unset_used]

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


def _single_quoted(text: str) -> str:
    """`text` as one single-quoted shell word: nothing in it is expanded."""
    return "'" + text.replace("'", "'\\''") + "'"


def _quoted(var: str, context: str) -> str:
    """A variable's expansion, quoted for the shell context it stands in."""
    if context in ('"', "$(("):  # already one word (in $((...)) checked to be an integer)
        return f"${{{var}}}"
    if context == "'":
        return f"'\"${{{var}}}\"'"  # close the single quotes, expand in double, reopen
    return f'"${{{var}}}"'  # a word of its own: at the top, in $(...), `...` or ${...}
