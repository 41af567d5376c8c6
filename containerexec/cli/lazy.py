"""A click group whose commands are imported when used, so `--help` loads no run core.

Click's "Lazily Loading Subcommands" pattern: the group holds a table of names
to "module:attribute" and imports a command's module only when that command
runs (or, for a group without summaries, when its help lists it).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class Lazy:
    """A command known by where it lives: `target` is "package.module:attribute".

    `summary` is the line `--help` lists without importing the module (it must
    be the first sentence of the command's help; tests/unit/test_cli_startup.py
    checks that); None means import the module to read it.
    """

    target: str
    summary: str | None = None
    hidden: bool = False


class LazyGroup(click.Group):
    """A group with commands of its own plus `lazy` ones imported on first use."""

    def __init__(self, *args: object, lazy: Mapping[str, Lazy] | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        return load(entry)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's listing, but a summary in the table stands in for importing the command."""
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            entry = self.lazy.get(name)
            if entry is not None and entry.hidden:
                continue
            if entry is not None and entry.summary is not None:
                # a stand-in whose help is the summary, so click shortens it as it would
                cmd: click.Command | None = click.Command(name, help=entry.summary)
            else:
                cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                listed.append((name, cmd))
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in listed])


def load(entry: Lazy) -> click.Command:
    """The command `entry` names, its module imported now."""
    module, _, attribute = entry.target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.target} is not a click command")  # a table typo: ours
    return command
