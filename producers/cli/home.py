"""Which Ferry a command talks to: ``ferry info`` (the ferry.toml, the home, Redis, the
connections), ``ferry redis stop`` (the embedded Redis of this home), and the ferry.toml
``ferry worker`` refuses to start without (one with no connection).

Every command finds its ferry.toml the same way (``producers.config.find_config``: ``--config``
/ ``$FERRY_CONFIG``, else the nearest ``ferry.toml`` upward) and keeps its embedded Redis in the
home beside it (``producers.embedded.ferry_home``); these commands show that choice instead of
leaving it to be guessed from a job that seems to have vanished.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import click

from producers.archive import archive_url, installed, shown_url, uses_embedded_redis
from producers.cli.console import fail, out, plain
from producers.config import FerryConfig, find_config, load_config
from producers.embedded import EmbeddedRedis, ferry_home, redis_server_binary
from producers.errors import ConfigError


def register(cli: click.Group) -> None:
    cli.add_command(info)
    cli.add_command(redis_group)


def where() -> dict[str, Any]:
    """The ferry.toml in use (and how it was found), the home, and where Redis is."""
    path = find_config()
    how = "FERRY_CONFIG" if os.environ.get("FERRY_CONFIG") else "nearest ferry.toml upward" if path else None
    home = ferry_home()
    embedded = EmbeddedRedis(home / "redis")
    redis: dict[str, Any]
    config = FerryConfig()
    if path is not None:
        with contextlib.suppress(ConfigError):
            config = load_config(path)
    configured = config.redis_url
    if os.environ.get("REDIS_URL"):
        redis = {"source": "REDIS_URL", "url": shown_url(os.environ["REDIS_URL"])}
    elif configured:
        redis = {"source": "redis_url in ferry.toml", "url": shown_url(configured)}
    else:
        redis = {"source": "embedded", "url": embedded.location.url, "running": embedded.is_running(),
                 "binary": embedded.recorded_binary() or _binary_for_new_data()}
    return {"config": str(path.resolve()) if path else None, "config_found_by": how,
            "home": str(home), "redis": redis, "archive_url": archive_url(config, embedded=uses_embedded_redis(config))}


def _archive(url: str | None) -> dict[str, Any] | None:
    """Where the archive is (its password shown as ``***``), how many jobs it holds and when the
    last move copied one; None when there is no archive."""
    if url is None:
        return None
    found: dict[str, Any] = {"url": shown_url(url), "rows": None, "last_move": None, "problem": None}
    if not installed():
        return {**found, "problem": "the archive extra is not installed (pip install 'ferry[archive]')"}
    from producers.archive.store import ArchiveStore
    archive = ArchiveStore(url)
    try:
        summary = archive.summary()
    except Exception as exc:  # unreachable, refused: info still shows the rest
        return {**found, "problem": f"unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"}
    finally:
        archive.engine.dispose()
    if summary is None:
        return {**found, "rows": 0}
    rows, last = summary
    return {**found, "rows": rows, "last_move": last.isoformat().replace("+00:00", "Z") if last else None}


def redis_hint() -> str:
    """What to check when Redis cannot be reached: the place it was taken from."""
    redis = where()["redis"]
    if redis["source"] == "REDIS_URL":
        return "check REDIS_URL; unset it to use the embedded Redis"
    if redis["source"] != "embedded":
        return f"check redis_url in {find_config()}"
    return (f"the embedded Redis in {ferry_home() / 'redis'} stopped (ferry redis stop, or killed); "
            "the next command starts it again, with its data")


def _binary_for_new_data() -> str | None:
    try:
        return redis_server_binary()
    except ConfigError:
        return None


def config_to_serve() -> FerryConfig:
    """A worker with no connection would start, serve nothing and never run a job: refuse,
    naming the ferry.toml it looked for."""
    try:
        config = load_config()
    except ConfigError as exc:
        fail(str(exc))
    if not config.connections:
        found = find_config()
        looked = (f"{found} names none" if found else
                  f"no ferry.toml in {os.getcwd()} or any folder above it, and FERRY_CONFIG is unset")
        fail(f"no connections to serve: {looked}; add a [connections.<name>] table "
             "(cp examples/sandbox.ferry.toml ferry.toml to try the sandbox)")
    return config


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print it as JSON")
def info(as_json: bool) -> None:
    """Which ferry.toml, Ferry home and Redis every command run here uses, and its connections."""
    found = where()
    found["archive"] = _archive(found.pop("archive_url"))
    connections: dict[str, str] = {}
    problem = None
    try:
        connections = {n: c.service for n, c in load_config().connections.items()}
    except ConfigError as exc:
        problem = str(exc)
    if as_json:
        click.echo(json.dumps({**found, "connections": connections, "config_problem": problem}, indent=2))
        return
    config = found["config"] or (f"[yellow]none[/yellow] (no ferry.toml in {os.getcwd()} or above it; "
                                 "FERRY_CONFIG unset)")
    out.print(f"config:       {config}" + (f"  ({found['config_found_by']})" if found["config"] else ""))
    out.print(f"home:         {found['home']}")
    redis = found["redis"]
    state = ""
    if redis["source"] == "embedded":
        state = ", running" if redis["running"] else ", not running (started on first use)"
        state += f", {redis['binary'] or 'no redis-server found'}"
    out.print(f"redis:        {redis['url']}  ({redis['source']}{state})")
    archive = found["archive"]
    if archive is None:
        out.print("archive:      none (\\[archive] url unset with an external Redis, or \"off\")")
    elif archive["problem"]:
        out.print(f"archive:      {plain(archive['url'])}  ([yellow]{plain(archive['problem'])}[/yellow])")
    else:
        last = f", last move {archive['last_move']}" if archive["last_move"] else ", nothing moved yet"
        out.print(f"archive:      {plain(archive['url'])}  ({archive['rows']} jobs{last})")
    names = ", ".join(f"{n} ({s})" for n, s in sorted(connections.items()))
    out.print(f"connections:  {names or '[yellow]none[/yellow]'}")
    if problem:
        fail(problem)


@click.group("redis")
def redis_group() -> None:
    """The embedded Redis of this Ferry home (used when neither REDIS_URL nor redis_url is set)."""


@redis_group.command()
def stop() -> None:
    """Stop the embedded Redis (its data stays; the next command starts it again)."""
    embedded = EmbeddedRedis(ferry_home() / "redis")
    if not embedded.is_running():
        out.print(f"the embedded Redis in {embedded.directory} is not running")
        return
    embedded.stop()
    out.print(f"stopped the embedded Redis in {embedded.directory}")
