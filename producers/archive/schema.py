"""The archive's tables (SQLAlchemy Core): one row per ended job that left Redis.

``record`` is the whole ``ferry status --json`` record; the other columns are what lists and
filters select by, indexed. The fragment indexes are the database's own: a GIN trigram index
(pg_trgm) on PostgreSQL, an FTS5 table with the trigram tokenizer on SQLite (kept by triggers).
The migrations (``producers/archive/migrations``) create all of it; this module is what the
code reads and writes through.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

JOBS = "ferry_archived_jobs"
TEXT = "ferry_archived_text"  # SQLite only: the FTS5 trigram table over file_name and error_message
VERSION_TABLE = "ferry_archive_version"

jobs = Table(
    JOBS, metadata,
    Column("id", String(64), primary_key=True),
    Column("score", BigInteger, nullable=False),  # the Redis indexes' score: creation ms x 1000 + n
    Column("kind", String(64), nullable=False),
    Column("connection", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", String(40), nullable=False),  # as the record has it: the copy's version
    Column("finished_at", DateTime(timezone=True)),
    Column("batch", String(64)),
    Column("tenant", String(128)),
    Column("priority", String(16)),
    Column("idempotency_key", String(256)),
    Column("error_step", String(64)),
    Column("error_status", Integer),
    Column("error_message", Text),
    Column("file_name", Text),
    Column("record", Text, nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False),
)
