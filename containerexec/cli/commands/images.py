"""Commands on images: push, inspect, images list, images prune; and pull/push progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from containerexec.cli.app import App
from containerexec.cli.options import pull_option
from containerexec.environment import images as image_store
from containerexec.environment import sharing
from containerexec.model.bindings import parse_pairs
from containerexec.model.spec import load_spec

DONE = ("Pull complete", "Already exists", "Pushed", "Layer already exists")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class TransferProgress:
    """Pull and push events -> layers and bytes: one updating line on a terminal, else a line
    per finished layer. Give `say` to print through another display (a run's)."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.live = say is None and sys.stderr.isatty()
        self.say = say or (lambda text: click.echo(text, err=True))
        self.verb, self.ref = "pull", ""
        self.layers: dict[str, tuple[int, int]] = {}  # layer id -> (bytes moved, bytes total)
        self.done: set[str] = set()
        self._shown = 0.0
        self._open = False

    def __call__(self, event: dict[str, Any]) -> None:
        status, layer = str(event.get("status", "")), str(event.get("id") or "")
        if status.startswith("Pulling from "):
            sep = "@" if layer.startswith("sha256:") else ":"
            self.verb, self.ref = "pull", f"{status.removeprefix('Pulling from ')}{sep}{layer}"
            return
        if status.startswith("The push refers to repository"):
            self.verb, self.ref = "push", status.rsplit("[", 1)[-1].rstrip("]")
            return
        if status.startswith(("Digest:", "Status:")) or "aux" in event:
            return self.close()
        if not layer or len(layer) != 12:  # layer ids are short hex; other ids are tags
            return
        current, total = self.layers.get(layer, (0, 0))
        detail = event.get("progressDetail") or {}
        if status in ("Downloading", "Pushing") and "current" in detail:
            current, total = int(detail["current"]), int(detail.get("total") or total)
        elif status in ("Download complete", "Pushed"):
            current = total
        self.layers[layer] = (current, total)
        if status in DONE and layer not in self.done:
            self.done.add(layer)
            if not self.live:
                self.say(f"{self.line()} (layer {layer} {status.lower()})")
        if self.live and time.monotonic() - self._shown > 0.1:
            self._shown = time.monotonic()
            self._open = True
            click.echo(f"\r{self.line()}\x1b[K", nl=False, err=True)

    def line(self) -> str:
        moved = sum(c for c, _ in self.layers.values())
        total = sum(t for _, t in self.layers.values())
        size = f"{human_bytes(moved)}/{human_bytes(total)}" if total else human_bytes(moved)
        return f"{self.verb} {self.ref}: {len(self.done)}/{len(self.layers)} layers, {size}"

    def close(self) -> None:
        """End the updating line, if one is open."""
        if self._open:
            click.echo(f"\r{self.line()}\x1b[K", err=True)
            self._open = False


def build_steps(line: str) -> None:
    """Build log lines worth showing while an image builds: the steps."""
    if line.startswith("Step "):
        click.echo(line, err=True)


@click.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "to",
    required=True,
    metavar="REGISTRY/REPO[:TAG]",
    help="Where to push, e.g. 127.0.0.1:5000/wordcount:1 (tag default: latest).",
)
@pull_option
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="An extra label on the pushed image (repeatable).",
)
@click.pass_obj
def push(app: App, spec: Path, to: str, pull: str | None, labels: tuple[str, ...]) -> None:
    """Push a module's image labelled with its spec; print REGISTRY/REPO@sha256:...

    That reference alone runs the module: `containerexec run REF`. The push is
    recorded in RUNS_DIR/pushes/MODULE.json.
    """
    module = load_spec(spec)
    progress = TransferProgress()
    try:
        rec = sharing.push(
            app.engine(),
            module,
            spec,
            to,
            pull=pull,
            labels=parse_pairs(labels, "--label"),
            sleep=app.sleep or time.sleep,
            on_progress=progress,
            on_log=build_steps,
        )
    finally:
        progress.close()
    path = sharing.write_push_record(app.store, rec)
    click.echo(
        f"pushed {rec.module} {rec.version} as {rec.to} ({rec.digest}); record: {path}\n"
        f"run it with nothing but the image: containerexec run {rec.pinned}",
        err=True,
    )
    click.echo(rec.pinned)


@click.command()
@click.argument("image")
@click.option(
    "--pull",
    type=click.Choice(["missing", "always", "never"]),
    default=None,
    help="When to pull IMAGE (default: missing).",
)
@click.pass_obj
def inspect(app: App, image: str, pull: str | None) -> None:
    """Print the module spec IMAGE carries (YAML, environment pinned to the image)."""
    progress = TransferProgress()
    try:
        text = sharing.inspect(
            app.engine(), image, pull=pull, sleep=app.sleep or time.sleep, on_progress=progress
        )
    finally:
        progress.close()
    click.echo(text, nl=False)


@click.group("images", invoke_without_command=True)
@click.pass_context
def images_group(ctx: click.Context) -> None:
    """Images containerexec built, pulled or pushed on this engine (default: list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_images)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


@images_group.command("list")
@click.option("--module", help="Only this module's images.")
@click.pass_obj
def list_images(app: App, module: str | None) -> None:
    """Module, reference, digest, size and last use (from the run records in --runs-dir)."""
    found = image_store.local_images(app.engine(), app.store, module=module)
    if not found:
        click.echo("no containerexec images on this engine")
        return
    click.echo(f"{'MODULE':20} {'REFERENCE':52} {'DIGEST':19} {'SIZE':>9} {'RUNS':>4}  LAST USED")
    for i in found:
        digest = i.digest[:19] if i.digest else "-"
        click.echo(
            f"{i.module:20} {i.reference:52} {digest:19} {human_bytes(i.size):>9} "
            f"{i.runs:>4}  {_when(i.last_used)}"
        )


@images_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--module", help="Only this module's images.")
@click.pass_obj
def prune(app: App, dry_run: bool, module: str | None) -> None:
    """Remove containerexec's images that no run record in --runs-dir needs.

    Images used by a recorded run are kept, so `repro` can still replay it. Run
    records in other runs folders are not consulted.
    """
    removed = image_store.prune(app.engine(), app.store, module=module, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for i in removed:
        click.echo(f"{verb} {i.reference} (module {i.module}, {human_bytes(i.size)})")
    if not removed:
        click.echo(
            f"nothing to remove: every containerexec image here is needed by a run "
            f"recorded in {app.store.runs}"
        )
        return
    click.echo(
        f"{verb} {len(removed)} image{'s' if len(removed) != 1 else ''}; layers shared "
        "with other images stay"
    )
