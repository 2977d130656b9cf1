"""Synchronous reads from the destinations: ``ferry jira …``, ``ferry marketplace …``,
``ferry awork …``. Mutations are jobs (``ferry submit``); these only look.

A read runs on this machine with the connection's credentials (``token_env``/``token_file`` from
ferry.toml) and needs no Redis and no worker. ``producers`` never imports the worker's HTTP stack
at import time (a producer-only install has no ``requests``): the clients are imported inside the
commands, and without them a read says which extra to install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast, get_args

import click

from producers.cli.console import PlainTable, fail, needs_extra, out
from producers.config import ConnectionConfig, Service, load_config
from producers.errors import ConfigError
from producers.params import AworkEntity, JiraAvatarType

if TYPE_CHECKING:
    from worker.http import Download
    from worker.runtime import Clients

AVATAR_SIZES = ("xsmall", "small", "medium", "large", "xlarge")
SYSTEM_AVATAR_TYPES = (*get_args(JiraAvatarType), "user")


def register(cli: click.Group) -> None:
    for group in (jira, marketplace, awork):
        cli.add_command(group)


# ---- plumbing shared by every read ---------------------------------------------------------------
def _connection(ctx: click.Context, service: Service, name: str | None) -> ConnectionConfig:
    """The named connection, or the only one of ``service`` when none is named."""
    config = load_config(ctx.obj.get("config") if ctx.obj else None)
    if name:
        conn = config.connection(name)
        if conn.service != service:
            raise ConfigError(f"{name!r} is a {conn.service} connection; this read needs {service}")
        return conn
    matching = [c for c in config.connections.values() if c.service == service]
    if len(matching) != 1:
        names = ", ".join(c.name for c in matching) or "none configured"
        raise ConfigError(f"name the {service} connection with -c (candidates: {names})")
    return matching[0]


@contextmanager
def _reading(ctx: click.Context, service: Service, connection: str | None) -> Iterator[Clients]:
    """The connection's clients; config problems exit 2, destination errors exit 1 with the
    destination's own message."""
    with needs_extra("worker", "reading from a destination"):  # its HTTP clients are the worker's
        from worker.errors import DestinationError
        from worker.http import new_session
        from worker.runtime import Clients

    try:
        conn = _connection(ctx, service, connection)
    except ConfigError as exc:
        fail(str(exc))
    session = new_session()
    try:
        yield Clients(conn, session)
    except DestinationError as exc:
        code = f"HTTP {exc.status}: " if exc.status else ""
        fail(f"{code}{exc.message}{_auth_hint(conn, exc.status)}", code=1)
    finally:
        session.close()


def _auth_hint(conn: ConnectionConfig, status: int | None) -> str:
    """A refused credential names the connection and where its token came from."""
    if status not in (401, 403):
        return ""
    source = f"${conn.token_env}" if conn.token_env and os.environ.get(conn.token_env) else \
        f"token_file {conn.token_file}" if conn.token_file else f"${conn.token_env}"
    email = f" and email {conn.email}" if conn.email else ""
    return f" (connection {conn.name!r}: check the token in {source}{email})"


def _save(download: Callable[[], Download], path: str, as_json: bool) -> None:
    """Stream an image to ``path``; a half-written file is removed if the transfer breaks."""
    try:
        with download() as image:
            written = image.save(path)
            content_type = image.content_type
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise
    if as_json:
        _print_json({"path": path, "bytes": written, "content_type": content_type})
    else:
        out.print(f"wrote {written} bytes ({content_type}) to {path}")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


connection_option = click.option("-c", "--connection", help="connection name from ferry.toml "
                                  "(default: the only connection of this service)")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")
output_option = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                             help="file to write the image to")


# ---- jira ----------------------------------------------------------------------------------------
@click.group()
def jira() -> None:
    """Read Jira avatars (project, issue type, priority)."""


@jira.command()
@click.option("--type", "avatar_type", required=True, type=click.Choice(SYSTEM_AVATAR_TYPES))
@click.option("--owner", help="project id/key, issue type id or priority id; omitted: system "
                              "avatars of the type only")
@connection_option
@json_option
@click.pass_context
def avatars(ctx: click.Context, avatar_type: str, owner: str | None, connection: str | None,
            as_json: bool) -> None:
    """System and custom avatars of an owner (or the type's system avatars)."""
    with _reading(ctx, "atlassian", connection) as clients:
        if owner is None:
            system, custom = clients.jira_avatars.system_avatars(avatar_type), []
        else:
            found = clients.jira_avatars.list_avatars(cast(JiraAvatarType, avatar_type), owner)
            system, custom = found.system, found.custom
    if as_json:
        _print_json({"system": [a.to_json() for a in system], "custom": [a.to_json() for a in custom]})
        return
    table = PlainTable("id", "kind", "selected", "deletable", "48x48")
    for avatar in [*custom, *system]:
        table.add_row(avatar.id, "system" if avatar.is_system else "custom",
                      "yes" if avatar.is_selected else "", "yes" if avatar.is_deletable else "",
                      avatar.urls.get("48x48", ""))
    out.print(table)


@jira.command("avatar-image")
@click.option("--type", "avatar_type", required=True, type=click.Choice(get_args(JiraAvatarType)))
@click.option("--avatar", help="avatar id")
@click.option("--owner", help="the owner's current avatar (neither --avatar nor --owner: the "
                              "type's default avatar)")
@click.option("--size", type=click.Choice(AVATAR_SIZES))
@click.option("--format", "image_format", type=click.Choice(("png", "svg")))
@output_option
@connection_option
@json_option
@click.pass_context
def avatar_image(ctx: click.Context, avatar_type: str, avatar: str | None, owner: str | None,
                 size: str | None, image_format: str | None, output: str, connection: str | None,
                 as_json: bool) -> None:
    """Download an avatar image: by id, by owner, or the type's default."""
    if avatar and owner:
        fail("give --avatar or --owner, not both")
    with _reading(ctx, "atlassian", connection) as clients:
        _save(lambda: clients.jira_avatars.avatar_image(
            avatar_type, avatar_id=avatar, owner=owner, size=size, format=image_format),
            output, as_json)


# ---- marketplace ---------------------------------------------------------------------------------
@click.group()
def marketplace() -> None:
    """Read Marketplace assets."""


@marketplace.command()
@click.argument("name")
@connection_option
@json_option
@click.pass_context
def asset(ctx: click.Context, name: str, connection: str | None, as_json: bool) -> None:
    """Details of a stored asset, by name (images/<uuid>.png) or its _links.self URL."""
    with _reading(ctx, "marketplace", connection) as clients:
        found = clients.marketplace.asset(name)
    if as_json:
        _print_json(found)
        return
    info = found.get("fileInfo") or {}
    out.print(f"{info.get('logicalFileName', '?')}  {info.get('size', '?')} bytes")
    _print_links(found.get("_links") or {})


@marketplace.command()
@connection_option
@json_option
@click.pass_context
def links(ctx: click.Context, connection: str | None, as_json: bool) -> None:
    """The asset resources' links (upload artifact, fetch artifact, upload image by type)."""
    with _reading(ctx, "marketplace", connection) as clients:
        found = clients.marketplace.asset_links()
    if as_json:
        _print_json({"_links": found})
        return
    _print_links(found)


def _print_links(links_: dict[str, Any]) -> None:
    table = PlainTable("link", "href / template")
    for name, value in links_.items():
        target = value.get("href") or value.get("template", "") if isinstance(value, dict) else value
        table.add_row(name, str(target))
    out.print(table)


# ---- awork ---------------------------------------------------------------------------------------
@click.group()
def awork() -> None:
    """Read awork profile images."""


@awork.command()
@click.option("--entity", required=True, type=click.Choice(get_args(AworkEntity)))
@click.option("--id", "entity_id", required=True, help="the entity's id in awork")
@output_option
@connection_option
@json_option
@click.pass_context
def image(ctx: click.Context, entity: str, entity_id: str, output: str, connection: str | None,
          as_json: bool) -> None:
    """Download the profile image of a company, contact person, project, … ."""
    with _reading(ctx, "awork", connection) as clients:
        _save(lambda: clients.awork.image(cast(AworkEntity, entity), entity_id), output, as_json)

