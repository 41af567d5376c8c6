"""The sh scripts of a packed batch (see run/packing/batch.py): pure text, run by /bin/sh.

The driver runs each value in order: it marks the value started, runs the value's
script (a function of the driver) in a background subshell (a fork, no new sh to exec),
waits, and appends the value's exit status and the cgroup's OOM kills during it to
state/status (run/packing/status.py), where it also said the value started. A
value's script links /outputs/NAME to its own staging folder, exports its environment
and execs its argv, every word single-quoted, through `setsid` (a session and process
group of its own, so a SIGTERM from a stop reaches the value and all it started through
the driver's trap, and a `kill 0` in the value never reaches the driver) and `timeout`
when there is one. Each exec costs about 0.5 ms here, the most of a tiny value's time:
two per value (setsid, then the argv). A value's stdout and stderr go to a pair of
files in state/ that the next value reuses while values print nothing: creating a file
cost more than running `true` (status.py says which pair holds which value's output).

Before a value's status is written, and so before its outputs are committed and the
next value starts, every process it left behind (`cmd &`, a daemon that left its
group with its own setsid) gets TERM, then KILL after STRAY_GRACE_S: nothing a value
leaves running writes into its committed outputs or the next value's. The driver
finds them in /proc (no `ps` in the image): every process but init (PID 1), the
driver, zombies, and what `docker exec` started (parent 0, from outside).
"""

from __future__ import annotations

from pathlib import Path

from containerexec.model.hostsafety import BATCH_ROOT
from containerexec.model.invocation import OUTPUTS_ROOT, Invocation

ROOT = BATCH_ROOT
SHELL = "/bin/sh"
STRAY_GRACE_S = 1.0  # a value's leftover processes get this long between TERM and KILL
TOOLS = ["rm", "setsid", "sleep"]  # what every driver runs besides sh's builtins


def quote(word: str) -> str:
    """`word` as one single-quoted sh word: nothing inside is expanded."""
    return "'" + word.replace("'", "'\\''") + "'"


def value_script(
    inv: Invocation,
    links: list[tuple[str, str]],
    stage: str,
    *,
    timeout_s: float | None = None,
    grace_s: float = 1.0,
) -> str:
    """The sh script of one value, sourced by the driver in a subshell: its output folders
    emptied and linked (`links`: name under /outputs, folder under `stage`), its
    environment, then exec its argv in a session of its own, under `timeout` if any."""
    lines = ["# one shard value of a containerexec batch (run/packing/batch.py)"]
    for link, sub in links:
        folder = quote(f"{stage}/{sub}")
        # Every value's staging folder is in the stage/ mount from the start: empty this
        # one of whatever an earlier value wrote into it by its path.
        entries = " ".join(f"{folder}/{g}" for g in ("*", ".[!.]*", "..?*"))
        lines.append(
            f'for cx_f in {entries}; do if [ -e "$cx_f" ] || [ -L "$cx_f" ]; then '
            f"rm -rf {entries} || exit 125; break; fi; done"
        )
        lines.append(f"ln -sfn {folder} {quote(f'{OUTPUTS_ROOT}/{link}')} || exit 125")
    lines += [f"export {quote(k)}={quote(v)}" for k, v in sorted(inv.env.items())]
    limit = "" if timeout_s is None else f"timeout -k {max(grace_s, 1):g} {timeout_s:g} "
    lines.append(f"exec setsid {limit}" + " ".join(quote(w) for w in inv.argv))
    return "\n".join(lines) + "\n"


DRIVER = r"""# containerexec batch driver (run/packing/batch.py): each value in order, one at a time
S={root}/state
cx_pid=
cx_stop=
cx_io=
cx_term() {{
  cx_stop=1
  if [ -n "$cx_pid" ]; then
    kill -TERM -"$cx_pid" 2>/dev/null || kill -TERM "$cx_pid" 2>/dev/null
  fi
}}
trap cx_term TERM INT HUP
cx_base=2
if [ $$ = 1 ]; then cx_base=1; fi
exec 9>>"$S/status"
cx_oomf=/dev/null
for cx_f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
  if [ -r "$cx_f" ]; then cx_oomf=$cx_f; break; fi
done
cx_ooms() {{
  cx_n=0
  while read -r cx_k cx_v; do
    if [ "$cx_k" = oom_kill ]; then cx_n=$cx_v; return 0; fi
  done <"$cx_oomf"
}}
cx_clean() {{
  # Two globs, not three, on the common path: empty is `/tmp/*` unexpanded, `.` and `..`.
  set -- /tmp/* /tmp/.*
  if [ $# = 3 ] && [ "$1" = "/tmp/*" ] && [ ! -e "$1" ] && [ ! -L "$1" ]; then return 0; fi
  rm -rf /tmp/* /tmp/.[!.]* /tmp/..?* 2>/dev/null
}}
cx_strays() {{
  cx_left=0
  set -- /proc/[0-9]*
  # Most values leave nothing: init (when not the driver) and the driver alone, no scan.
  if [ "$cx_sig" = TERM ] && [ $# -le "$cx_base" ]; then return 0; fi
  for cx_p in "$@"; do
    cx_p=${{cx_p#/proc/}}
    if [ "$cx_p" = 1 ] || [ "$cx_p" = $$ ]; then continue; fi
    read -r cx_l 2>/dev/null <"/proc/$cx_p/stat" || continue
    set -- ${{cx_l##*) }}
    if [ "$2" = 0 ] || [ "$1" = Z ] || [ "$1" = X ]; then continue; fi
    if kill -"$cx_sig" "$cx_p" 2>/dev/null; then cx_left=$((cx_left + 1)); fi
  done
}}
cx_sweep() {{
  cx_sig=TERM; cx_strays
  cx_t=0
  while [ "$cx_left" -gt 0 ] && [ "$cx_t" -lt {ticks} ]; do
    sleep 0.1; cx_t=$((cx_t + 1)); cx_sig=0; cx_strays
  done
  cx_t=0
  while [ "$cx_left" -gt 0 ] && [ "$cx_t" -lt 10 ]; do
    cx_sig=KILL; cx_strays; cx_t=$((cx_t + 1))
  done
  if [ "$cx_left" -gt 0 ]; then echo "containerexec: value $1: KILL left processes" >&2; fi
}}
cx_one() {{
  if [ -n "$cx_stop" ]; then exit 143; fi
  cx_before=$cx_n  # the count after the last value: only the driver ran since
  if [ -z "$cx_io" ]; then cx_io=$1; fi
  read -r cx_up cx_x </proc/uptime; echo "S $1 $cx_up $cx_io" >&9
  ( cx_v ) 9>&- <"/dev/null" >"$S/$cx_io.out" 2>"$S/$cx_io.err" &
  cx_pid=$!
  wait "$cx_pid"
  cx_rc=$?
  while [ -n "$cx_stop" ] && kill -0 "$cx_pid" 2>/dev/null; do wait "$cx_pid"; cx_rc=$?; done
  cx_pid=
  cx_sweep "$1"
  # Printed nothing (nothing it left can write now): the next value reuses the files.
  cx_kept=-
  if [ -s "$S/$cx_io.out" ] || [ -s "$S/$cx_io.err" ]; then cx_kept=$cx_io; cx_io=; fi
  cx_ooms
  read -r cx_up cx_x </proc/uptime; echo "E $1 $cx_rc $((cx_n - cx_before)) $cx_up $cx_kept" >&9
  cx_clean
}}
cx_ooms
"""


def driver_script(values: list[tuple[str, str]]) -> str:
    """The batch's driver (DRIVER), then for each (name, value script) in order: the script
    as the function cx_v, and its run. One file for the batch: a file per value cost more
    than its value's run."""
    ticks = max(1, round(STRAY_GRACE_S * 10))
    parts = [DRIVER.format(root=ROOT, ticks=ticks)]
    parts += [f"cx_v() {{\n{script}}}\ncx_one {name}\n" for name, script in values]
    return "".join(parts)


def output_links(inv: Invocation) -> list[tuple[str, str]]:
    """What a value writes through: (name under /outputs, its folder in the value's staging)
    for each output mount. The folder is named as in the unpacked staging the mount's
    source is in: an output port's name, or `.returned` for the returned value
    (run/returned.py), mounted as /outputs/.containerexec-returned."""
    return sorted(
        (Path(m.target).name, Path(m.source).name) for m in inv.mounts if m.kind == "output"
    )
