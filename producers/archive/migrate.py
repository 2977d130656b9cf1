"""Running the archive's Alembic migrations in-process (``ferry archive migrate``, worker start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from producers.archive.schema import VERSION_TABLE

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the newest revision; returns it. Two processes at once: PostgreSQL
    serializes them (an advisory lock in ``env.py``); on SQLite the loser finds the work done."""
    target = head()
    if current(engine) == target:
        return target
    config = _config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except Exception:
        if current(engine) != target:
            raise
    return target
