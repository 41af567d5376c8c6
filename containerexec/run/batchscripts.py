"""The sh scripts of a packed batch (see run/packing.py): pure text, run by /bin/sh.

The driver runs each value in order: it marks the value started, runs the value's
script in the background (so a SIGTERM from a stop reaches the value through the
driver's trap), waits, and writes the value's exit status and the cgroup's OOM
kills during it. A value's script links /outputs/NAME to its own staging folder,
exports its environment and execs its argv, every word single-quoted.
"""

from __future__ import annotations

from pathlib import Path

from containerexec.model.hostsafety import BATCH_ROOT
from containerexec.model.invocation import OUTPUTS_ROOT, Invocation

ROOT = BATCH_ROOT
SHELL = "/bin/sh"


def quote(word: str) -> str:
    """`word` as one single-quoted sh word: nothing inside is expanded."""
    return "'" + word.replace("'", "'\\''") + "'"


def value_script(inv: Invocation, links: list[str], stage: str) -> str:
    """The sh script of one value: its output links, its environment, then exec its argv."""
    lines = ["# one shard value of a containerexec batch (run/packing.py)"]
    for name in links:
        lines.append(
            f"ln -sfn {quote(f'{stage}/{name}')} {quote(f'{OUTPUTS_ROOT}/{name}')} || exit 125"
        )
    lines += [f"export {quote(k)}={quote(v)}" for k, v in sorted(inv.env.items())]
    lines.append("exec " + " ".join(quote(w) for w in inv.argv))
    return "\n".join(lines) + "\n"


DRIVER = r"""# containerexec batch driver (run/packing.py): each value in order, one at a time
S={root}/state
C={root}/ctl
cx_pid=
cx_stop=
trap 'cx_stop=1; if [ -n "$cx_pid" ]; then kill -TERM "$cx_pid" 2>/dev/null; fi' TERM INT HUP
cx_ooms() {{
  cx_n=0
  for cx_f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    if [ -r "$cx_f" ]; then
      while read -r cx_k cx_v; do if [ "$cx_k" = oom_kill ]; then cx_n=$cx_v; fi; done <"$cx_f"
      return 0
    fi
  done
}}
cx_clean() {{
  for cx_f in /tmp/* /tmp/.[!.]* /tmp/..?*; do
    if [ -e "$cx_f" ] || [ -L "$cx_f" ]; then
      rm -rf /tmp/* /tmp/.[!.]* /tmp/..?* 2>/dev/null
      return 0
    fi
  done
}}
cx_one() {{
  if [ -n "$cx_stop" ]; then exit 143; fi
  cx_ooms
  cx_before=$cx_n
  : >"$S/$1.start"
  {run} <"/dev/null" >"$S/$1.out" 2>"$S/$1.err" &
  cx_pid=$!
  wait "$cx_pid"
  cx_rc=$?
  while [ -n "$cx_stop" ] && kill -0 "$cx_pid" 2>/dev/null; do wait "$cx_pid"; cx_rc=$?; done
  cx_pid=
  cx_ooms
  printf '%s %s\n' "$cx_rc" "$((cx_n - cx_before))" >"$S/$1.rc"
  cx_clean
}}
"""


def driver_script(
    scripts: list[tuple[str, str]], *, timeout_s: float | None, grace_s: float
) -> str:
    """The batch's driver: runs the value scripts `(NNNNNN, text)` in order (see DRIVER).

    Without a timeout each value's script is a function of the driver (parsed once, no
    file per value); with one, `timeout` runs each value's own file in ctl/.
    """
    if timeout_s is None:
        run = '"cx_v$1"'
        functions = "".join(f"cx_v{name}() {{\n{text}}}\n" for name, text in scripts)
    else:
        run = f'timeout -k {max(grace_s, 1):g} {timeout_s:g} {SHELL} "$C/$1.sh"'
        functions = ""
    calls = "".join(f"cx_one {name}\n" for name, _ in scripts)
    return DRIVER.format(root=ROOT, run=run) + functions + calls


def output_links(inv: Invocation) -> list[str]:
    """The names under /outputs a value writes through: its output ports (and value folder)."""
    return sorted(Path(m.target).name for m in inv.mounts if m.kind == "output")
