"""``ferry archive migrate|move|show``: the SQL archive of ended jobs (docs/archive.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from producers.cli.console import connect, fail, needs_extra, out
from producers.client import Ferry

if TYPE_CHECKING:
    from producers.archive.store import ArchiveStore


def register(cli: click.Group) -> None:
    cli.add_command(archive)


@click.group()
def archive() -> None:
    """The archive of ended jobs: its schema, and moving jobs into it now."""


def _archive(ctx: click.Context) -> tuple[Ferry, ArchiveStore]:
    with needs_extra("archive", "the archive"):
        from producers.archive.store import ArchiveStore
    ferry = connect(ctx)
    if not isinstance(ferry.store.archive, ArchiveStore):
        fail("no archive: set [archive] url in ferry.toml (sqlite:///path or postgresql://…); "
             "with the embedded Redis it defaults to a file in the Ferry home")
    return ferry, ferry.store.archive


@archive.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the archive's schema to its newest revision (workers also do it when they start)."""
    from producers.archive.migrate import upgrade

    _, found = _archive(ctx)
    revision = upgrade(found.engine)
    out.print(f"archive {found!r} at revision {revision}")


@archive.command()
@click.option("--json", "as_json", is_flag=True, help="print it as JSON")
@click.pass_context
def move(ctx: click.Context, as_json: bool) -> None:
    """Move the ended jobs that are due into the archive now (a worker does it every few seconds)."""
    from producers.archive.mover import Mover

    ferry, found = _archive(ctx)
    moved = Mover(ferry.store, found, ferry.config.archive).run_round()
    if as_json:
        click.echo(json.dumps({"moved": moved}))
    else:
        out.print(f"moved {moved} job(s) into {found!r}")
