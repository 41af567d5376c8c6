"""containerexec report: a run or a pipeline run as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

import click

from containerexec.cli.app import App


@click.command()
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write (replaced if it exists; the command says so).",
)
@click.pass_obj
def report(app: App, run: str, output: Path) -> None:
    """Write a run's (or a pipeline run's) report: one HTML file with its timeline, memory and
    CPU per shard, and failures with their repro commands; it fetches nothing. RUN: a run id,
    a pipeline run id, a unique prefix of one, or 'last'."""
    from containerexec.report import make_report, page  # pydantic records: not for --help

    made = make_report(app.store, run)
    replaced = page.write(output, made.html)
    size = len(made.html.encode()) / (1 << 20)
    click.echo(
        f"report of {made.kind} {made.id} ({made.shards} shard records): {output} "
        f"({size:.2f} MiB{'; replaced the file that was there' if replaced else ''})"
    )
