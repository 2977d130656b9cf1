"""Alembic's environment for the archive: always run in-process on the connection the caller
hands over (``producers.archive.migrate``), never from an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from producers.archive.schema import VERSION_TABLE

LOCK_ID = 270027  # a PostgreSQL advisory lock: two workers starting at once migrate one at a time


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
        context.run_migrations()


run()
