"""What a module run shows: streamed output, a live progress line, the summary and failure
reports. Shared by `containerexec run` and `Module.run(progress=True)`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from containerexec.run.results import RunResult, ShardEvent, shard_failed
from containerexec.run.trace import suggestion

RULE = "-" * 72

# What the Python API's `progress=` takes: True (this display), or a callable that gets
# every ShardEvent (JobEvent for a pipeline), or False.
Progress = bool | Callable[[ShardEvent], None]


class RunDisplay:
    """Turns executor events into terminal output; plain lines when stderr is not a terminal."""

    def __init__(self, *, stream_output: bool, total: int) -> None:
        self.stream_output = stream_output
        self.total = total
        self.console = Console(stderr=True, highlight=False)
        self.live_mode = self.console.is_terminal and not stream_output
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.done = self.failed = self.running = self.retried = self.cancelled = 0
        self.skipped = 0
        self.planned = False  # the run's shards are planned: its image is ready
        self._live: Live | None = None

    def __enter__(self) -> RunDisplay:
        if self.live_mode:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def line(self, index: int, stream: str, text: str) -> None:
        """A line of the container's output (single-shard runs only)."""
        click.echo(text, err=stream == "stderr")

    def event(self, e: ShardEvent) -> None:
        with self.lock:
            if e.kind == "planned":
                self.total = e.count
                self.planned = True
            elif e.kind == "started":
                self.running += 1
            elif e.kind == "retrying":
                self.retried += 1
                a = e.attempt
                if a is not None and a.failure == "engine_lost":
                    self._say(
                        f"shard {e.index}: lost the Docker engine ({a.message}); waiting "
                        "for it to answer again (up to 2 min), then running the shard "
                        "again (not counted as a retry)"
                    )
                else:
                    self._say(
                        f"shard {e.index}: attempt {a.number if a else '?'} failed "
                        f"({a.message if a else ''}); retrying"
                    )
            elif e.kind == "skipped":
                self.skipped += 1
                self.done += 1
            elif e.kind == "finished":
                self.running -= 1
                if e.state == "succeeded":
                    self.done += 1
                elif e.state == "cancelled":
                    self.cancelled += 1
                else:
                    self.failed += 1
                cached = e.attempt is None and e.state == "succeeded"  # no container ran
                if cached and self.stream_output:
                    self._say(
                        "the outputs came from the cache (an earlier run with the same image, "
                        "command and inputs); no container ran. --no-cache runs it again"
                    )
                if not self.live_mode and not self.stream_output:
                    secs = (e.attempt.ended_at - e.attempt.started_at) if e.attempt else 0.0
                    self._say(
                        f"[{self.done + self.failed + self.cancelled}/{self.total}] "
                        f"shard {e.index} {e.state} "
                        + ("(cached)" if cached else f"({secs:.1f} s)")
                    )
            if self._live is not None:
                self._live.update(self._render())

    def _say(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False)
        else:
            click.echo(text, err=True)

    def _render(self) -> Text:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed - self.skipped
        left = self.total - self.done - self.failed - self.cancelled
        eta = f"{elapsed / finished * left:.0f} s" if finished and left else "-"
        return Text(
            f"shards {self.done + self.failed}/{self.total}  done {self.done}  "
            f"running {self.running}  failed {self.failed}  retried {self.retried}  "
            f"elapsed {elapsed:.0f} s  eta {eta}"
        )

    def note(self, text: str) -> None:
        self._say(text)


def summary(
    result: RunResult, console: Console | None = None, *, resume_with: str | None = None
) -> None:
    """The table at the end of a run, then one report per failed shard; on stderr.

    `resume_with` is the SPEC argument to show in the resume command of a run that
    did not succeed.
    """
    rec = result.record
    console = console or Console(stderr=True, highlight=False)
    table = Table(title=f"run {rec.run_id}", show_header=True, box=None)
    # "cancelled" shards were stopped while running; "not started" ones never ran.
    columns = ("module", "state", "shards", "succeeded", "failed", "cancelled", "not started")
    for col in columns:
        table.add_column(col, no_wrap=True)
    c = rec.counts
    selected = len(rec.shards_selected) if rec.shards_selected is not None else rec.shard_count
    table.add_row(
        rec.module,
        rec.state,
        str(selected),
        str(c.get("succeeded", 0)),
        str(c.get("failed", 0)),
        str(c.get("cancelled", 0)),
        str(c.get("pending", 0)),
    )
    console.print(table)
    # On its own line: a digest in the table would squeeze the counts on a narrow terminal.
    click.echo(f"image: {rec.image.pinned}", err=True)
    if rec.reason:
        click.echo(f"stopped early: {rec.reason}", err=True)
    if rec.shard_count == 0:
        click.echo("0 shards: the array has no element (array.allow_empty)", err=True)
    for shard in result.failed[:10]:
        click.echo(f"\n{shard_failed(rec, shard)}", err=True)
    if len(result.failed) > 10:
        click.echo(
            f"... and {len(result.failed) - 10} more failed shards: "
            f"containerexec runs show {rec.run_id}",
            err=True,
        )
    _near_limit(result)
    outs = ", ".join(f"{k} -> {v}" for k, v in rec.outputs.items())
    if rec.state == "succeeded" and outs:
        click.echo(f"outputs: {outs}", err=True)
    click.echo(f"record: {result.record_path}", err=True)
    if rec.state != "succeeded" and resume_with is not None:
        # Where and how it ran, so the command resumes it the same way.
        how = " --on slurm" if rec.scheduler is not None else ""
        batch_size = (rec.spec.get("array") or {}).get("batch_size")
        how += f" --batch-size {batch_size}" if batch_size else ""
        click.echo(
            f"resume (reruns the shards that did not succeed): containerexec run "
            f"{resume_with}{how} --resume {rec.run_id}",
            err=True,
        )


def _near_limit(result: RunResult) -> None:
    """A warning line per shard whose memory peak passed 90 % of its limit (ten at most)."""
    if not result.near_limit:
        return
    click.echo("", err=True)
    for warning in result.near_limit[:10]:
        click.echo(str(warning), err=True)
    more = len(result.near_limit) - 10
    if more > 0:
        click.echo(f"... and {more} more shards near their memory limit", err=True)
    click.echo(
        f"{suggestion(result.peak_memory_bytes)}; every shard's figures: containerexec "
        f"runs show {result.record.run_id} --trace",
        err=True,
    )
