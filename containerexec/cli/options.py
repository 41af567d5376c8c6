"""Options that several commands share, declared once so their flags and help agree."""

from __future__ import annotations

import click

inputs_option = click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input value or path (repeatable).",
)
outputs_option = click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="NAME=PATH",
    help="Where an output goes (repeatable; default: inside the run's folder).",
)
overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace what a non-empty -o place holds (removed when the run commits its first "
    "output, for a pipeline when it places its outputs); without it such a place is refused.",
)
pull_option = click.option(
    "--pull",
    type=click.Choice(["missing", "always", "never"]),
    default=None,
    help="When to pull `environment.image` (default: the spec's, or missing).",
)
grace_option = click.option(
    "--grace",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when stopping a container.",
)
