"""The archive of ended jobs: one table, its indexes, and the fragment index of the database.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JOBS = "ferry_archived_jobs"
TEXT = "ferry_archived_text"


def upgrade() -> None:
    op.create_table(
        JOBS,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("score", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("batch", sa.String(64)),
        sa.Column("tenant", sa.String(128)),
        sa.Column("priority", sa.String(16)),
        sa.Column("idempotency_key", sa.String(256)),
        sa.Column("error_step", sa.String(64)),
        sa.Column("error_status", sa.Integer),
        sa.Column("error_message", sa.Text),
        sa.Column("file_name", sa.Text),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Lists page newest first by score, alone or within one filter; retention by finished_at.
    op.create_index("ix_archived_score", JOBS, ["score"], unique=True)
    for column in ("status", "kind", "connection", "batch", "tenant"):
        op.create_index(f"ix_archived_{column}_score", JOBS, [column, "score"])
    op.create_index("ix_archived_status_finished", JOBS, ["status", "finished_at"])
    op.create_index("ix_archived_idempotency_key", JOBS, ["idempotency_key"])
    if op.get_bind().dialect.name == "postgresql":
        # The record (JSON, ~1.5 KB) goes out of line, so the rows a search visits are the narrow
        # columns: a fragment search reading thousands of rows reads their pages, not the records'.
        op.execute(f"ALTER TABLE {JOBS} SET (toast_tuple_target = 256)")
        op.execute(f"ALTER TABLE {JOBS} ALTER COLUMN record SET STORAGE EXTERNAL")
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in ("file_name", "error_message"):
            op.execute(f"CREATE INDEX ix_archived_{column}_trgm ON {JOBS} USING gin ({column} gin_trgm_ops)")
    elif op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE VIRTUAL TABLE {TEXT} USING fts5(file_name, error_message, "
                   f"content='{JOBS}', content_rowid='rowid', tokenize='trigram')")
        new = "new.rowid, new.file_name, new.error_message"
        old = "'delete', old.rowid, old.file_name, old.error_message"
        op.execute(f"CREATE TRIGGER {TEXT}_ai AFTER INSERT ON {JOBS} BEGIN "
                   f"INSERT INTO {TEXT}(rowid, file_name, error_message) VALUES ({new}); END")
        op.execute(f"CREATE TRIGGER {TEXT}_ad AFTER DELETE ON {JOBS} BEGIN "
                   f"INSERT INTO {TEXT}({TEXT}, rowid, file_name, error_message) VALUES ({old}); END")
        op.execute(f"CREATE TRIGGER {TEXT}_au AFTER UPDATE ON {JOBS} BEGIN "
                   f"INSERT INTO {TEXT}({TEXT}, rowid, file_name, error_message) VALUES ({old}); "
                   f"INSERT INTO {TEXT}(rowid, file_name, error_message) VALUES ({new}); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TABLE IF EXISTS {TEXT}")
    op.drop_table(JOBS)
