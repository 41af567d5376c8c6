"""`containerexec lock SPEC`: resolve a module's Python packages again and show the diff."""

from __future__ import annotations

import time
from pathlib import Path

import click

from containerexec.cli.app import App
from containerexec.cli.options import pull_option
from containerexec.environment import images, locks, pyimage
from containerexec.errors import UsageError
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.store.records import ImageRecord

from .images import TransferProgress


def resolve_image(
    app: App, m: ModuleSpec, spec: Path, pull: str | None, *, base_only: bool = False
) -> ImageRecord:
    """`images.resolve` with pull progress and build lines on stderr."""
    progress = TransferProgress()
    try:
        return images.resolve(
            app.engine(),
            m,
            spec.parent,
            pull=pull,
            sleep=app.sleep or time.sleep,
            on_progress=progress,
            on_log=lambda line: click.echo(line, err=True),
            base_only=base_only,
        )
    finally:
        progress.close()


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@pull_option
@click.pass_obj
def lock(app: App, spec: Path, pull: str | None) -> None:
    """Resolve the module's environment.python packages for its image (with this host's
    pip) and write <module>.lock beside SPEC: exact versions and sha256 of every wheel.
    Prints what changed. Builds then install exactly that, with no network."""
    m = load_spec(spec)
    if m.environment.python is None:
        raise UsageError(f"{spec}: module '{m.name}' declares no environment.python; no lock")
    base = resolve_image(app, m, spec, pull, base_only=True)
    path, old, new = pyimage.relock(
        app.engine(),
        m,
        spec.parent,
        base,
        say=lambda text: click.echo(f"packages: {text}", err=True),
    )
    changes = locks.diff(old, new)
    if old is not None and not changes:
        click.echo(f"{path}: unchanged ({len(new.packages)} packages)")
        return
    click.echo(f"{path}: {'written' if old is None else 'updated'}")
    for line in changes:
        click.echo(f"  {line}")
